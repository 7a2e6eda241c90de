package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseFlags(t *testing.T) {
	tests := map[string]struct {
		args    []string
		tokens  []string
		wantErr string
	}{
		"defaults":        {nil, nil, ""},
		"repeated tokens": {[]string{"-token", "a", "-token", "b"}, []string{"a", "b"}, ""},
		"comma tokens":    {[]string{"-token", "a, b,,c"}, []string{"a", "b", "c"}, ""},
		"localhost":       {[]string{"-listen", "localhost:8200"}, nil, ""},
		"ipv6 loopback":   {[]string{"-listen", "[::1]:0"}, nil, ""},
		"remote allowed":  {[]string{"-listen", "0.0.0.0:0", "-allow-remote"}, nil, ""},
		"all interfaces":  {[]string{"-listen", ":8080"}, nil, "not a loopback address"},
		"remote refused":  {[]string{"-listen", "10.1.2.3:80"}, nil, "not a loopback address"},
		"no port":         {[]string{"-listen", "127.0.0.1"}, nil, "missing port"},
		"empty token":     {[]string{"-token", " , "}, nil, "empty token"},
		"unknown flag":    {[]string{"-bogus"}, nil, "flag provided but not defined"},
		"zero limit":      {[]string{"-per-minute", "0"}, nil, "must be positive"},
		"stray argument":  {[]string{"extra"}, nil, "unexpected arguments"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(o.tokens, tc.tokens) {
				t.Errorf("tokens = %q, want %q", o.tokens, tc.tokens)
			}
		})
	}
}

func TestRunExitCodes(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		code int
	}{
		"help":      {[]string{"-h"}, 0},
		"bad flag":  {[]string{"-bogus"}, 2},
		"not local": {[]string{"-listen", "0.0.0.0:0"}, 2},
		"in use":    {[]string{"-listen", "127.0.0.1:-1"}, 1},
	} {
		t.Run(name, func(t *testing.T) {
			if code := run(context.Background(), tc.args, io.Discard, io.Discard); code != tc.code {
				t.Errorf("exit %d, want %d", code, tc.code)
			}
		})
	}
}

func TestRunServesAndShutsDown(t *testing.T) {
	addrFile := filepath.Join(t.TempDir(), "addr")
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr bytes.Buffer
	exit := make(chan int)
	go func() {
		exit <- run(ctx, []string{"-addr-file", addrFile, "-token", "t1,t2", "-per-hour", "7"}, &stdout, &stderr)
	}()

	var base string
	for deadline := time.Now().Add(10 * time.Second); base == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("no addr file; exit %d, stderr %s", <-exit, stderr.String())
		}
		if b, err := os.ReadFile(addrFile); err == nil {
			base = string(b)
		}
	}
	if !regexp.MustCompile(`^http://127\.0\.0\.1:\d+$`).MatchString(base) {
		t.Errorf("addr file = %q", base)
	}

	req, _ := http.NewRequest("GET", base+"/v2/gen-ai/anthropic/keys", nil)
	req.Header.Set("Authorization", "Bearer t2")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Ratelimit-Limit") != "7" {
		t.Errorf("status %d, limit %q", resp.StatusCode, resp.Header.Get("Ratelimit-Limit"))
	}

	cancel()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d: %s", code, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no shutdown")
	}
	if got, want := stdout.String(), "gradient-emulator listening on "+base+"\n"; got != want {
		t.Errorf("stdout = %q, want %q", got, want)
	}
	if !strings.Contains(stderr.String(), "GET /v2/gen-ai/anthropic/keys -> 200") || strings.Contains(stderr.String(), "t2") {
		t.Errorf("request log = %q", stderr.String())
	}
	if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
		t.Errorf("addr file left behind: %v", err)
	}
}
