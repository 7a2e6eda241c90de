package backend

import (
	"testing"
	"time"
)

// GRADIENT_TEST_WAL_MIN_AGE sets the minimum age of the entries Vault's
// periodic rollback hands to the plugin; without it the default stands, and
// a value that is not a positive duration stops the mount from starting.
func TestWALMinAgeFromEnv(t *testing.T) {
	cases := map[string]struct {
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		"unset":    {env: nil, want: walRollbackMinAge},
		"lowered":  {env: map[string]string{envTestWALMinAge: "2s"}, want: 2 * time.Second},
		"garbage":  {env: map[string]string{envTestWALMinAge: "soon"}, wantErr: true},
		"zero":     {env: map[string]string{envTestWALMinAge: "0s"}, wantErr: true},
		"negative": {env: map[string]string{envTestWALMinAge: "-1m"}, wantErr: true},
	}
	for label, tc := range cases {
		t.Run(label, func(t *testing.T) {
			b := newBackend()
			err := b.tuneWALFromEnv(func(k string) (string, bool) { v, ok := tc.env[k]; return v, ok })
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && b.Backend.WALRollbackMinAge != tc.want {
				t.Fatalf("WALRollbackMinAge = %s, want %s", b.Backend.WALRollbackMinAge, tc.want)
			}
		})
	}
}
