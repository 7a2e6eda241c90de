// Command gradient-emulator serves the emulated Gradient AI platform and
// provider key-check endpoints (package emulator) on a local port, for
// acceptance tests and manual runs against a real Vault.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/gradient-vault/vault-plugin-secrets-gradient/internal/emulator"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type options struct {
	listen      string
	allowRemote bool
	tokens      tokenList
	perMinute   int
	perHour     int
	addrFile    string
	quiet       bool
}

// tokenList collects -token values, repeated or comma-separated.
type tokenList []string

func (t *tokenList) String() string { return strings.Join(*t, ",") }

func (t *tokenList) Set(v string) error {
	n := len(*t)
	for _, tok := range strings.Split(v, ",") {
		if tok = strings.TrimSpace(tok); tok != "" {
			*t = append(*t, tok)
		}
	}
	if len(*t) == n {
		return errors.New("empty token")
	}
	return nil
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("gradient-emulator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.listen, "listen", "127.0.0.1:0", "address to listen on (port 0 picks a free port)")
	fs.BoolVar(&o.allowRemote, "allow-remote", false, "allow a non-loopback -listen address")
	fs.Var(&o.tokens, "token", "bearer token the platform accepts; repeatable or comma-separated (default emulator-token)")
	fs.IntVar(&o.perMinute, "per-minute", 250, "requests per token per rolling minute")
	fs.IntVar(&o.perHour, "per-hour", 5000, "requests per token per rolling hour")
	fs.StringVar(&o.addrFile, "addr-file", "", "write the base URL to this file once listening")
	fs.BoolVar(&o.quiet, "quiet", false, "do not log requests")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	switch {
	case fs.NArg() > 0:
		return o, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case o.perMinute < 1 || o.perHour < 1:
		return o, errors.New("-per-minute and -per-hour must be positive")
	}
	return o, checkLoopback(o.listen, o.allowRemote)
}

// checkLoopback refuses addresses other machines could reach: the control
// API has no auth and shows every stored secret.
func checkLoopback(listen string, allowRemote bool) error {
	if allowRemote {
		return nil
	}
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return fmt.Errorf("-listen %q: %w", listen, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil
	}
	return fmt.Errorf("-listen %q is not a loopback address; add -allow-remote to expose the emulator (its control API has no auth)", listen)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "gradient-emulator:", err)
		return 2
	}

	cfg := emulator.Config{Tokens: o.tokens, PerMinuteLimit: o.perMinute, PerHourLimit: o.perHour}
	if !o.quiet {
		cfg.Logf = log.New(stderr, "gradient-emulator: ", log.LstdFlags|log.Lmicroseconds).Printf
	}

	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		fmt.Fprintln(stderr, "gradient-emulator:", err)
		return 1
	}
	url := "http://" + ln.Addr().String()
	if o.addrFile != "" {
		if err := writeFileAtomic(o.addrFile, url); err != nil {
			ln.Close()
			fmt.Fprintln(stderr, "gradient-emulator: writing -addr-file:", err)
			return 1
		}
		// A stale file would point the next run's scripts at a dead port.
		defer os.Remove(o.addrFile)
	}
	fmt.Fprintf(stdout, "gradient-emulator listening on %s\n", url)

	srv := &http.Server{Handler: emulator.New(cfg), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	select {
	case err := <-served:
		fmt.Fprintln(stderr, "gradient-emulator:", err)
		return 1
	case <-ctx.Done():
	}
	// Requests held by a "hang" fault would block Shutdown for minutes, so
	// give in-flight requests a moment and then cut the rest off.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		_ = srv.Close()
	}
	return 0
}

// writeFileAtomic writes content via a temporary file and a rename, so a
// script polling for the file never reads it half-written.
func writeFileAtomic(path, content string) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // no-op after a successful rename
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
