package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/vault/api"
)

// vaultDev is the bench's own `vault server -dev`.
type vaultDev struct {
	cmd     *exec.Cmd
	done    chan struct{}
	addr    string
	logPath string
	client  *api.Client
}

const rootToken = "bench-root"

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startVault(vaultBin, dir, pluginDir string, concurrency int) (*vaultDev, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	v := &vaultDev{addr: fmt.Sprintf("http://127.0.0.1:%d", port), logPath: filepath.Join(dir, "vault.log"), done: make(chan struct{})}
	logF, err := os.Create(v.logPath)
	if err != nil {
		return nil, err
	}
	v.cmd = exec.Command(vaultBin, "server", "-dev", "-dev-no-store-token",
		"-dev-root-token-id="+rootToken,
		fmt.Sprintf("-dev-listen-address=127.0.0.1:%d", port),
		"-dev-plugin-dir="+pluginDir,
		"-log-level=info")
	v.cmd.Dir = dir
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") && !strings.HasPrefix(kv, "HOME=") {
			env = append(env, kv)
		}
	}
	v.cmd.Env = append(env, "HOME="+dir)
	v.cmd.Stdout, v.cmd.Stderr = logF, logF
	setProcAttr(v.cmd)
	if err := v.cmd.Start(); err != nil {
		logF.Close()
		return nil, fmt.Errorf("starting vault: %w", err)
	}
	go func() { _ = v.cmd.Wait(); logF.Close(); close(v.done) }()

	cfg := api.DefaultConfig()
	cfg.Address = v.addr
	cfg.MaxRetries = 0
	cfg.Timeout = 5 * time.Minute
	// One keep-alive connection per worker: the default pool keeps fewer
	// than 8 idle connections on a small machine and would reconnect.
	if t, ok := cfg.HttpClient.Transport.(*http.Transport); ok {
		t.MaxIdleConnsPerHost = 4 * concurrency
		t.MaxIdleConns = 4 * concurrency
	}
	if v.client, err = api.NewClient(cfg); err != nil {
		v.stop()
		return nil, err
	}
	v.client.SetToken(rootToken)
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-v.done:
			return nil, fmt.Errorf("vault exited while starting; see %s", v.logPath)
		default:
		}
		if h, err := v.client.Sys().Health(); err == nil && h.Initialized && !h.Sealed {
			return v, nil
		}
		if time.Now().After(deadline) {
			v.stop()
			return nil, fmt.Errorf("vault not healthy within 60s; see %s", v.logPath)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (v *vaultDev) stop() {
	if v.cmd == nil || v.cmd.Process == nil {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.done:
	case <-time.After(15 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.done
	}
	// Whatever is left of its process group (plugins).
	_ = syscall.Kill(-v.cmd.Process.Pid, syscall.SIGKILL)
}

// pluginPID is the running process of the plugin binary at exe, a child
// of this Vault, or 0.
func (v *vaultDev) pluginPID(exe string) int {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid(pid) != v.cmd.Process.Pid {
			continue
		}
		if target, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); err == nil && target == exe {
			return pid
		}
	}
	return 0
}

// procStat reads /proc/<pid>/stat: parent, CPU time used (user+system),
// and when the process started.
type procStat struct {
	ppid    int
	cpu     time.Duration
	started time.Time
}

const clockTicks = 100 // USER_HZ on Linux

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// fields[0] is field 3 (state).
	num := func(i int) int64 { n, _ := strconv.ParseInt(fields[i-3], 10, 64); return n }
	st := procStat{ppid: int(num(4))}
	st.cpu = time.Duration(num(14)+num(15)) * time.Second / clockTicks
	// btime in /proc/stat is whole seconds; /proc/uptime has 10 ms.
	if up, err := os.ReadFile("/proc/uptime"); err == nil {
		secs, _ := strconv.ParseFloat(strings.Fields(string(up))[0], 64)
		since := time.Duration(secs*float64(time.Second)) - time.Duration(num(22))*time.Second/clockTicks
		st.started = time.Now().Add(-since)
	}
	return st, nil
}

func ppid(pid int) int {
	st, err := readProcStat(pid)
	if err != nil {
		return 0
	}
	return st.ppid
}

// rssMiB reads VmRSS and VmHWM (peak) of a process, in MiB.
func rssMiB(pid int) (rss, peak float64) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			rss = kb / 1024
		case "VmHWM:":
			peak = kb / 1024
		}
	}
	return rss, peak
}

// logTime finds the first line of Vault's log after offset that contains
// msg and returns its timestamp.
func logTime(path string, offset int64, msg string) (time.Time, bool) {
	f, err := os.Open(path)
	if err != nil {
		return time.Time{}, false
	}
	defer f.Close()
	if _, err := f.Seek(offset, io.SeekStart); err != nil {
		return time.Time{}, false
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, msg) {
			continue
		}
		ts, _, _ := strings.Cut(line, " ")
		for _, layout := range []string{"2006-01-02T15:04:05.000Z0700", "2006-01-02T15:04:05.000Z07:00", time.RFC3339Nano} {
			if t, err := time.Parse(layout, ts); err == nil {
				return t, true
			}
		}
	}
	return time.Time{}, false
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// processExists reports whether pid is still running (not a zombie).
func processExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
