package backend

import (
	"testing"
	"time"
)

func TestTuneWALFromEnv(t *testing.T) {
	cases := map[string]struct {
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		"unset keeps the default": {env: nil, want: walRollbackMinAge},
		"a duration":              {env: map[string]string{envTestWALMinAge: "5s"}, want: 5 * time.Second},
		"zero is refused":         {env: map[string]string{envTestWALMinAge: "0s"}, wantErr: true},
		"garbage is refused":      {env: map[string]string{envTestWALMinAge: "soon"}, wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			b := newBackend()
			err := b.tuneWALFromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if !tc.wantErr && b.WALRollbackMinAge != tc.want {
				t.Errorf("WALRollbackMinAge = %s, want %s", b.WALRollbackMinAge, tc.want)
			}
		})
	}
}
