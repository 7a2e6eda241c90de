package scripts_test

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The README and docs/ point at each other and at files of the repository.
// Sections move between pages; a link left pointing at the old place is a
// reader sent nowhere. These tests follow every such link.

// checkedDocs: the pages whose links are checked, relative to the repository
// root. CHANGELOG.md is left out: its entries record what was true then.
func checkedDocs(t *testing.T, root string) []string {
	t.Helper()
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	pages := []string{"README.md", "BENCHMARKS.md"}
	for _, d := range docs {
		rel, err := filepath.Rel(root, d)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, rel)
	}
	return pages
}

// TestMarkdownLinksResolve: every relative link in README.md, BENCHMARKS.md
// and docs/*.md names a file or directory of the repository, and every
// #anchor names a heading of its page by GitHub's rule. Links to other sites
// are not followed (no network in tests).
func TestMarkdownLinksResolve(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	pages := checkedDocs(t, root)
	if !slices.Contains(pages, filepath.Join("docs", "README.md")) {
		t.Fatalf("docs/README.md, the index of docs/, is missing: %v", pages)
	}
	links := 0
	for _, page := range pages {
		n, broken := checkLinks(root, page)
		links += n
		for _, b := range broken {
			t.Errorf("%s: %s", page, b)
		}
	}
	// A parser that found nothing would pass everything.
	if links < 50 {
		t.Errorf("found %d links in %v; the link parser is missing them", links, pages)
	}
}

// TestMarkdownLinkCheckerFindsBrokenLinks: the checker reports a missing
// file, a missing anchor in another page and in its own page, and accepts
// GitHub's anchors for headings with code, punctuation and repeats.
func TestMarkdownLinkCheckerFindsBrokenLinks(t *testing.T) {
	root := t.TempDir()
	write := func(name, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("docs/b.md", "# B\n\n## `keys/<name>/agents` and `reassign`\n\n## Drift: changes made behind Vault's back\n\n## Repeat\n\n## Repeat\n")
	write("docs/a.md", strings.Join([]string{
		"# A",
		"[ok](b.md#keysnameagents-and-reassign) [ok](b.md#drift-changes-made-behind-vaults-back)",
		"[ok](b.md#repeat-1) [ok](#a) [ok](../docs/) [`code` text](b.md)",
		"[gone](c.md) [no anchor](b.md#keys) [no own anchor](#b)",
		"[split",
		"text](missing.md) [web](https://example.com/x#y)",
		"```",
		"[in a code block](nowhere.md)",
		"```",
		"`[inline code](nowhere.md)`",
	}, "\n"))
	n, broken := checkLinks(root, "docs/a.md")
	if n != 10 {
		t.Errorf("found %d links, want 10", n)
	}
	want := []string{
		`"c.md": no such file`,
		`"b.md#keys": no heading with that anchor`,
		`"#b": no heading with that anchor`,
		`"missing.md": no such file`,
	}
	if !slices.Equal(broken, want) {
		t.Errorf("broken links:\n%q\nwant\n%q", broken, want)
	}
}

var (
	fence = regexp.MustCompile("(?m)^ {0,3}(```|~~~)[^\n]*\n(?s:.*?)\n {0,3}(```|~~~)[ \t]*$")
	// A code span: its text is not markdown, so no link is read from it.
	codeSpan = regexp.MustCompile("`[^`\n]*`")
	// [text](target) or [text](target "title"); text may hold one level of
	// brackets and line breaks.
	link    = regexp.MustCompile(`\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*([^()\s]+)(?:\s+"[^"]*")?\s*\)`)
	heading = regexp.MustCompile(`(?m)^ {0,3}#{1,6}[ \t]+(.+?)[ \t#]*$`)
	scheme  = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:`)
)

// withoutCode blanks fenced blocks and code spans, keeping the text's length
// so that nothing else moves. Code spans inside a link's text keep their
// backticks, which the link regexp accepts.
func withoutCode(text string) string {
	text = fence.ReplaceAllStringFunc(text, func(block string) string {
		return strings.Map(func(r rune) rune {
			if r == '\n' {
				return r
			}
			return ' '
		}, block)
	})
	return codeSpan.ReplaceAllStringFunc(text, func(span string) string {
		return "`" + strings.Repeat("x", len(span)-2) + "`"
	})
}

// checkLinks reads page (relative to root) and returns how many links it
// checked and a description of each broken one, in order.
func checkLinks(root, page string) (int, []string) {
	text, err := os.ReadFile(filepath.Join(root, page))
	if err != nil {
		return 0, []string{err.Error()}
	}
	var broken []string
	n := 0
	for _, m := range link.FindAllStringSubmatch(withoutCode(string(text)), -1) {
		target := m[2]
		if scheme.MatchString(target) {
			continue
		}
		n++
		if problem := resolve(root, page, target); problem != "" {
			broken = append(broken, problem)
		}
	}
	return n, broken
}

// resolve checks one link target of page; "" means it resolves.
func resolve(root, page, target string) string {
	file, anchor, _ := strings.Cut(target, "#")
	path := filepath.Join(root, page)
	if file != "" {
		if strings.HasPrefix(file, "/") {
			path = filepath.Join(root, file)
		} else {
			path = filepath.Join(root, filepath.Dir(page), file)
		}
		if rel, err := filepath.Rel(root, path); err != nil || strings.HasPrefix(rel, "..") {
			return quote(target) + ": outside the repository"
		}
		if _, err := os.Stat(path); err != nil {
			return quote(target) + ": no such file"
		}
	}
	if anchor == "" {
		return ""
	}
	text, err := os.ReadFile(path)
	if err != nil || !strings.HasSuffix(path, ".md") {
		return quote(target) + ": an anchor into a file that is not markdown"
	}
	if !slices.Contains(anchors(string(text)), anchor) {
		return quote(target) + ": no heading with that anchor"
	}
	return ""
}

func quote(s string) string { return `"` + s + `"` }

// anchors lists the anchors GitHub gives the headings of a markdown page:
// each heading's slug, with -1, -2, ... after repeats.
func anchors(text string) []string {
	var out []string
	seen := map[string]int{}
	// Fenced blocks only: a "# comment" in a shell example is not a heading,
	// but code spans in a heading are part of its text.
	for _, m := range heading.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
		s := slug(m[1])
		if k := seen[s]; k > 0 {
			out = append(out, s+"-"+strconv.Itoa(k))
		} else {
			out = append(out, s)
		}
		seen[s]++
	}
	return out
}

var inlineLink = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)

// slug is GitHub's anchor for a heading's text: the text as rendered (code
// spans and emphasis lose their markers, links keep their text), lowercased,
// with every character that is not a letter, a digit, a mark, '_' or '-'
// dropped and each space made a '-'.
func slug(heading string) string {
	rendered := inlineLink.ReplaceAllString(heading, "$1")
	rendered = strings.NewReplacer("`", "", "*", "").Replace(rendered)
	var b strings.Builder
	for _, r := range strings.ToLower(rendered) {
		switch {
		case r == ' ':
			b.WriteRune('-')
		case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r):
			b.WriteRune(r)
		}
	}
	return b.String()
}
