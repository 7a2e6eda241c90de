package main

import (
	"errors"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 100; i >= 1; i-- {
		d = append(d, time.Duration(i))
	}
	cases := map[float64]time.Duration{0.5: 50, 0.99: 99, 1: 100, 0: 1}
	for p, want := range cases {
		if got := percentile(d, p); got != want {
			t.Errorf("percentile(%v) = %v, want %v", p, got, want)
		}
	}
	if percentile(nil, 0.5) != 0 {
		t.Error("empty input")
	}
}

func TestMeasureCountsEveryOpAndError(t *testing.T) {
	seen := make([]bool, 50)
	r := measure("x", 4, 50, 0, func(i int) error {
		seen[i] = true
		if i%10 == 0 {
			return errors.New("boom")
		}
		return nil
	})
	for i, s := range seen {
		if !s {
			t.Errorf("op %d not run", i)
		}
	}
	if r.ops != 50 || r.errors != 5 || r.firstErr == nil {
		t.Errorf("ops %d errors %d first %v", r.ops, r.errors, r.firstErr)
	}
}

func TestCallDelta(t *testing.T) {
	before := map[string]int{"POST /v2/gen-ai/anthropic/keys": 1}
	after := map[string]int{"POST /v2/gen-ai/anthropic/keys": 3, "GET /anthropic/v1/models": 2}
	p, v, _ := callDelta(before, after)
	if p != 2 || v != 2 {
		t.Errorf("platform %d provider %d", p, v)
	}
}
