package backend

import (
	"strings"
	"testing"
)

func TestValidateName(t *testing.T) {
	valid := []string{"a", "team-a.bot-1", strings.Repeat("a", 64), "0", "sk", "s-k-", ".a", "a.", ".-", "-.", ".0"}
	invalid := []string{"", strings.Repeat("a", 65), "A", "a b", "a_b", "a/b", "é", "sk-x", "a\n", "a\x00", ".", "..", "...", "a..b"}
	for _, n := range valid {
		if err := validateName(n); err != nil {
			t.Errorf("validateName(%q) = %v", n, err)
		}
	}
	for _, n := range invalid {
		err := validateName(n)
		if err == nil {
			t.Errorf("validateName(%q) accepted", n)
			continue
		}
		if !strings.Contains(err.Error(), nameRule) {
			t.Errorf("validateName(%q) does not quote the rule: %v", n, err)
		}
	}
}
