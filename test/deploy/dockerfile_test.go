package deploy

import (
	"bufio"
	"bytes"
	"debug/buildinfo"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	Cmd  string // upper case: FROM, RUN, ...
	Args string
	Line int
}

// stage is one FROM ... section.
type stage struct {
	From  string // image reference as written
	Name  string // AS name, may be empty
	Instr []instruction
}

// parseDockerfile splits a Dockerfile into stages. It understands what this
// repository's Dockerfile uses: comments, parser directives, backslash
// continuations and global ARGs before the first FROM.
func parseDockerfile(data []byte) (global []instruction, stages []stage, err error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	var cur strings.Builder
	start, n := 0, 0
	flush := func() error {
		text := strings.TrimSpace(cur.String())
		cur.Reset()
		if text == "" {
			return nil
		}
		cmd, args, _ := strings.Cut(text, " ")
		in := instruction{Cmd: strings.ToUpper(cmd), Args: strings.TrimSpace(args), Line: start}
		if in.Cmd == "FROM" {
			f := strings.Fields(in.Args)
			// Skip --platform=... options.
			for len(f) > 0 && strings.HasPrefix(f[0], "--") {
				f = f[1:]
			}
			if len(f) == 0 {
				return fmt.Errorf("line %d: FROM without an image", in.Line)
			}
			s := stage{From: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				s.Name = f[2]
			}
			stages = append(stages, s)
			return nil
		}
		if len(stages) == 0 {
			global = append(global, in)
			return nil
		}
		stages[len(stages)-1].Instr = append(stages[len(stages)-1].Instr, in)
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") || (trimmed == "" && cur.Len() == 0) {
			continue
		}
		if cur.Len() == 0 {
			start = n
		}
		if body, ok := strings.CutSuffix(strings.TrimRight(line, " \t"), `\`); ok {
			cur.WriteString(body + " ")
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return global, stages, flush()
}

func loadDockerfile(t testing.TB) ([]instruction, []stage) {
	t.Helper()
	global, stages, err := parseDockerfile(readFile(t, "Dockerfile"))
	if err != nil {
		t.Fatalf("Dockerfile: %v", err)
	}
	if len(stages) < 2 {
		t.Fatalf("Dockerfile has %d stages, want a build stage and a final stage", len(stages))
	}
	return global, stages
}

// buildCommand returns the build stage's `go build` RUN, without RUN options
// such as --mount, and the path it writes the binary to.
func buildCommand(stages []stage) (cmd, out string, err error) {
	for _, s := range stages[:len(stages)-1] {
		for _, in := range s.Instr {
			if in.Cmd != "RUN" || !strings.Contains(in.Args, "go build") {
				continue
			}
			f := in.Args
			for strings.HasPrefix(f, "--") {
				_, f, _ = strings.Cut(f, " ")
				f = strings.TrimSpace(f)
			}
			m := regexp.MustCompile(`\s-o\s+(\S+)`).FindStringSubmatch(f)
			if m == nil {
				return "", "", fmt.Errorf("line %d: go build without -o", in.Line)
			}
			return f, m[1], nil
		}
	}
	return "", "", fmt.Errorf("no RUN with go build in a build stage")
}

// buildLikeDockerfile copies the build context the way .dockerignore filters
// it and runs the Dockerfile's go build command in it, for this machine's
// OS and architecture. It returns the binary's path.
func buildLikeDockerfile(root, dir, version string) (string, error) {
	data, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return "", err
	}
	_, stages, err := parseDockerfile(data)
	if err != nil {
		return "", err
	}
	cmd, out, err := buildCommand(stages)
	if err != nil {
		return "", err
	}
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	if err != nil {
		return "", err
	}
	ctxDir := filepath.Join(dir, "context")
	if err := copyContext(root, ctxDir, parseDockerignore(ignore)); err != nil {
		return "", fmt.Errorf("copy build context: %w", err)
	}
	bin := filepath.Join(dir, "kubestream")
	sh := exec.Command("sh", "-c", strings.ReplaceAll(cmd, out, bin))
	sh.Dir = ctxDir
	sh.Env = append(os.Environ(), "VERSION="+version, "TARGETOS="+runtime.GOOS, "TARGETARCH="+runtime.GOARCH)
	if b, err := sh.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", cmd, err, b)
	}
	return bin, nil
}

// ignoreRule is one .dockerignore line.
type ignoreRule struct {
	re     *regexp.Regexp
	negate bool
}

// parseDockerignore compiles .dockerignore patterns with Docker's rules:
// paths are relative to the context root, * and ? stay within a path
// element, ** spans any number of them, and a pattern that matches a
// directory matches everything below it.
func parseDockerignore(data []byte) []ignoreRule {
	var rules []ignoreRule
	for _, line := range strings.Split(string(data), "\n") {
		p := strings.TrimSpace(line)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		r := ignoreRule{}
		if rest, ok := strings.CutPrefix(p, "!"); ok {
			r.negate, p = true, strings.TrimSpace(rest)
		}
		p = strings.TrimPrefix(filepath.ToSlash(filepath.Clean(p)), "/")
		var re strings.Builder
		re.WriteString("^")
		for i := 0; i < len(p); i++ {
			switch c := p[i]; {
			case c == '*' && i+1 < len(p) && p[i+1] == '*':
				i++
				if i+1 < len(p) && p[i+1] == '/' {
					i++
					re.WriteString("(.*/)?")
				} else {
					re.WriteString(".*")
				}
			case c == '*':
				re.WriteString("[^/]*")
			case c == '?':
				re.WriteString("[^/]")
			default:
				re.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		re.WriteString("$")
		r.re = regexp.MustCompile(re.String())
		rules = append(rules, r)
	}
	return rules
}

// excluded applies the rules in order, the last match winning; a rule
// matches a path when it matches the path or one of its parent directories.
func excluded(rules []ignoreRule, rel string) bool {
	ex := false
	for _, r := range rules {
		for p := rel; p != "." && p != "/"; p = filepath.Dir(p) {
			if r.re.MatchString(filepath.ToSlash(p)) {
				ex = !r.negate
				break
			}
		}
	}
	return ex
}

func copyContext(root, dst string, rules []ignoreRule) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		if d.IsDir() {
			if d.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || excluded(rules, rel) {
			return nil
		}
		return copyFile(path, filepath.Join(dst, rel))
	})
}

func copyFile(src, dst string) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func TestDockerignoreMatcher(t *testing.T) {
	rules := parseDockerignore(readFile(t, ".dockerignore"))
	for path, want := range map[string]bool{
		"go.mod":                        false,
		"cmd/kubestream/main.go":        false,
		"pkg/event/translate.go":        false,
		"internal/controlplane/x.go":    false,
		"pkg/event/translate_test.go":   true,
		"pkg/event/testdata/golden.txt": true,
		"deploy/deployment.yaml":        true,
		"docs/deploy.md":                true,
		".git/config":                   true,
		".env":                          true,
		"kubeconfig":                    true,
		"Dockerfile":                    true,
	} {
		if got := excluded(rules, path); got != want {
			t.Errorf("%s excluded = %v, want %v", path, got, want)
		}
	}
}

// TestDockerfile checks what a linter would and what only this project
// knows: the Go version matches go.mod, the exposed port is the default
// --listen-address, the final stage copies what the build stage wrote.
func TestDockerfile(t *testing.T) {
	global, stages := loadDockerfile(t)
	build, final := stages[0], stages[len(stages)-1]

	for _, s := range stages {
		ref := os.Expand(s.From, func(k string) string { return argDefault(global, k) })
		if !strings.Contains(ref, ":") || strings.HasSuffix(ref, ":latest") {
			t.Errorf("FROM %s: pin a tag (not latest) so builds are repeatable", s.From)
		}
	}
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(readFile(t, "go.mod"))
	if goVersion == nil {
		t.Fatal("go.mod has no go directive")
	}
	goMinor := string(goVersion[1])
	buildRef := os.Expand(build.From, func(k string) string { return argDefault(global, k) })
	if want := "golang:" + goMinor + "-bookworm"; buildRef != want {
		t.Errorf("build stage FROM %s (%s), want %s to match go.mod's go %s", build.From, buildRef, want, goMinor)
	}

	// Modules are downloaded in their own layer, before the sources arrive.
	var sawModCopy, sawDownload bool
	for _, in := range build.Instr {
		switch {
		case in.Cmd == "COPY" && in.Args == "go.mod go.sum ./":
			sawModCopy = true
		case in.Cmd == "RUN" && strings.Contains(in.Args, "go mod download"):
			if !sawModCopy {
				t.Errorf("line %d: go mod download before COPY go.mod go.sum ./", in.Line)
			}
			sawDownload = true
		case in.Cmd == "COPY" && !sawDownload:
			t.Errorf("line %d: COPY %s before go mod download: every source edit would download the modules again", in.Line, in.Args)
		}
	}
	if !sawDownload {
		t.Error("build stage has no RUN go mod download layer")
	}
	cmd, out, err := buildCommand(stages)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath", "-s -w", "-X main.version=${VERSION}", "./cmd/kubestream"} {
		if !strings.Contains(cmd, want) {
			t.Errorf("go build command lacks %q: %s", want, cmd)
		}
	}

	for _, s := range stages {
		for _, in := range s.Instr {
			if in.Cmd == "ADD" {
				t.Errorf("line %d: ADD %s: use COPY (ADD fetches URLs and unpacks archives implicitly)", in.Line, in.Args)
			}
		}
	}

	if final.From != "gcr.io/distroless/static-debian12:nonroot" {
		t.Errorf("final stage FROM %s, want gcr.io/distroless/static-debian12:nonroot", final.From)
	}
	last := map[string]string{}
	labels := map[string]bool{}
	for _, in := range final.Instr {
		last[in.Cmd] = in.Args
		if in.Cmd == "LABEL" {
			for _, m := range regexp.MustCompile(`(org\.opencontainers\.image\.[a-z]+)=`).FindAllStringSubmatch(in.Args, -1) {
				labels[m[1]] = true
			}
		}
		if in.Cmd == "COPY" && !strings.HasPrefix(in.Args, "--from=") {
			t.Errorf("line %d: final stage copies from the build context (%s): only the binary belongs in the image", in.Line, in.Args)
		}
	}
	if want := "--from=" + build.Name + " " + out + " /kubestream"; last["COPY"] != want {
		t.Errorf("final stage COPY %s, want %s (the build writes %s)", last["COPY"], want, out)
	}
	if last["USER"] != "65532:65532" {
		t.Errorf("final stage USER %q, want 65532:65532 (numeric, so runAsNonRoot can verify it)", last["USER"])
	}
	var entrypoint, cmdArgs []string
	if err := json.Unmarshal([]byte(last["ENTRYPOINT"]), &entrypoint); err != nil || len(entrypoint) != 1 || entrypoint[0] != "/kubestream" {
		t.Errorf(`ENTRYPOINT %s, want ["/kubestream"] (exec form, so signals reach kubestream)`, last["ENTRYPOINT"])
	}
	if err := json.Unmarshal([]byte(last["CMD"]), &cmdArgs); err != nil || len(cmdArgs) != 1 || cmdArgs[0] != "run" {
		t.Errorf(`CMD %s, want ["run"]`, last["CMD"])
	}
	_, port, _ := strings.Cut(flagDefault(t, "listen-address"), ":")
	if last["EXPOSE"] != port {
		t.Errorf("EXPOSE %q, want %q: the port of kubestream run's default --listen-address", last["EXPOSE"], port)
	}
	for _, l := range []string{"title", "source", "version", "revision"} {
		if !labels["org.opencontainers.image."+l] {
			t.Errorf("final stage lacks LABEL org.opencontainers.image.%s", l)
		}
	}
}

func argDefault(global []instruction, name string) string {
	for _, in := range global {
		if k, v, ok := strings.Cut(in.Args, "="); in.Cmd == "ARG" && ok && k == name {
			return v
		}
	}
	return ""
}

// TestImageBinary checks the binary the Dockerfile's build command produces
// from the filtered build context: it builds at all (the context holds every
// package it imports), it is static, stripped, built with -trimpath and
// without cgo, and the version reaches main.version.
func TestImageBinary(t *testing.T) {
	bin := imageBinary(t)
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("binary has a program interpreter: it is dynamically linked and will not start on distroless/static")
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}
	if f.Section(".symtab") != nil {
		t.Error("binary has a symbol table: -ldflags -s did not apply")
	}
	info, err := buildinfo.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	if settings["-trimpath"] != "true" || settings["CGO_ENABLED"] != "0" {
		t.Errorf("build settings -trimpath=%q CGO_ENABLED=%q, want true and 0", settings["-trimpath"], settings["CGO_ENABLED"])
	}
	out, err := exec.Command(bin, "version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "kubestream "+image.version+" ") {
		t.Errorf("kubestream version = %q (%v), want the version given to -X main.version (%s)", out, err, image.version)
	}
}
