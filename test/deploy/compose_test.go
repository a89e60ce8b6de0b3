package deploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeFile is the part of the Compose specification docker-compose.yaml
// uses.
type composeFile struct {
	Name     string                    `json:"name"`
	Services map[string]composeService `json:"services"`
	Volumes  map[string]any            `json:"volumes"`
}

type composeService struct {
	Image       string                       `json:"image"`
	Build       *composeBuild                `json:"build"`
	Command     []string                     `json:"command"`
	Environment map[string]string            `json:"environment"`
	Volumes     []string                     `json:"volumes"`
	Ports       []string                     `json:"ports"`
	Profiles    []string                     `json:"profiles"`
	User        string                       `json:"user"`
	ReadOnly    bool                         `json:"read_only"`
	DependsOn   map[string]composeDependency `json:"depends_on"`
	Healthcheck *composeHealthcheck          `json:"healthcheck"`
	// Known but not checked.
	Hostname        string   `json:"hostname"`
	SecurityOpt     []string `json:"security_opt"`
	CapDrop         []string `json:"cap_drop"`
	Restart         string   `json:"restart"`
	StopGracePeriod string   `json:"stop_grace_period"`
}

type composeBuild struct {
	Context string            `json:"context"`
	Args    map[string]string `json:"args"`
}

type composeDependency struct {
	Condition string `json:"condition"`
}

type composeHealthcheck struct {
	Test        []string `json:"test"`
	Interval    string   `json:"interval"`
	Timeout     string   `json:"timeout"`
	Retries     int      `json:"retries"`
	StartPeriod string   `json:"start_period"`
}

func loadCompose(t *testing.T) composeFile {
	t.Helper()
	var raw map[string]any
	if err := yaml.Unmarshal(readFile(t, "docker-compose.yaml"), &raw); err != nil {
		t.Fatalf("docker-compose.yaml is not valid YAML: %v", err)
	}
	// Extension fields (x-...) hold anchors; the rest must be known.
	for k := range raw {
		if strings.HasPrefix(k, "x-") {
			delete(raw, k)
		}
	}
	b, err := json.Marshal(raw)
	if err != nil {
		t.Fatal(err)
	}
	var c composeFile
	if err := yaml.UnmarshalStrict(b, &c); err != nil {
		t.Fatalf("docker-compose.yaml: %v", err)
	}
	return c
}

// volumeTarget finds the host source of the volume mounted at target.
func volumeSource(s composeService, target string) (source, mode string, ok bool) {
	for _, v := range s.Volumes {
		// source:target[:mode]; a ${VAR:-default} source contains no ':'
		// after the default's own, so split from the right.
		parts := strings.Split(v, ":")
		if n := len(parts); n >= 2 {
			if parts[n-1] == target {
				return strings.Join(parts[:n-1], ":"), "", true
			}
			if n >= 3 && parts[n-2] == target {
				return strings.Join(parts[:n-2], ":"), parts[n-1], true
			}
		}
	}
	return "", "", false
}

// argValue returns the value following --name (or --name=value).
func argValue(args []string, name string) (string, bool) {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1], true
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v, true
		}
	}
	return "", false
}

// TestCompose checks docker-compose.yaml against what it runs: the flags
// exist in the binary, brokers are addressed the way they advertise
// themselves, every dependency has a health check to wait for, and the
// kubeconfig reaches kubestream read-only.
func TestCompose(t *testing.T) {
	c := loadCompose(t)
	flags := runFlags(t)
	_, metricsPort, _ := strings.Cut(flagDefault(t, "listen-address"), ":")

	var kubestreams []string
	for name, s := range c.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("service %s has neither image nor build", name)
		}
		if s.Build != nil {
			kubestreams = append(kubestreams, name)
			continue
		}
		if i := strings.LastIndex(s.Image, ":"); i < 0 || strings.HasSuffix(s.Image, ":latest") {
			t.Errorf("service %s: image %s: pin a tag so everyone runs the same broker", name, s.Image)
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) < 2 || s.Healthcheck.Test[0] != "CMD" {
			t.Errorf("service %s: needs a healthcheck in exec form ([CMD, ...]) so kubestream starts after it is up", name)
		}
	}
	slices.Sort(kubestreams)
	if want := []string{"kubestream", "kubestream-nats"}; !slices.Equal(kubestreams, want) {
		t.Fatalf("services built from the Dockerfile: %v, want %v", kubestreams, want)
	}

	sinks := map[string]string{}
	for _, name := range kubestreams {
		s := c.Services[name]
		if s.Build.Context != "." {
			t.Errorf("%s: build context %q, want . (the Dockerfile at the repository root)", name, s.Build.Context)
		}
		if len(s.Command) == 0 || s.Command[0] != "run" {
			t.Errorf("%s: command %v does not start with run", name, s.Command)
		}
		if bad := unknownFlags(flagNames(s.Command), flags); len(bad) > 0 {
			t.Errorf("%s: command uses flags kubestream run does not have: %v", name, bad)
		}
		for k := range s.Environment {
			if flag, ok := strings.CutPrefix(k, "KUBESTREAM_"); ok && !flags[strings.ToLower(strings.ReplaceAll(flag, "_", "-"))] {
				t.Errorf("%s: environment %s matches no flag of kubestream run", name, k)
			}
		}
		kc := s.Environment["KUBESTREAM_KUBECONFIG"]
		src, mode, ok := volumeSource(s, kc)
		if kc == "" || !ok || mode != "ro" || src != "${KUBECONFIG:-~/.kube/config}" {
			t.Errorf("%s: want the kubeconfig ${KUBECONFIG:-~/.kube/config} mounted read-only at KUBESTREAM_KUBECONFIG (%q), volumes %v", name, kc, s.Volumes)
		}
		if !s.ReadOnly {
			t.Errorf("%s: read_only: true, kubestream writes nothing", name)
		}
		if !slices.ContainsFunc(s.Ports, func(p string) bool { return strings.HasSuffix(p, ":"+metricsPort) }) {
			t.Errorf("%s: ports %v do not publish the metrics port %s", name, s.Ports, metricsPort)
		}
		sink, _ := argValue(s.Command, "sink")
		sinks[sink] = name
		// A broker kubestream talks to is a dependency it waits for.
		var addrs []string
		switch sink {
		case "kafka":
			v, _ := argValue(s.Command, "kafka-brokers")
			addrs = strings.Split(v, ",")
		case "nats":
			v, _ := argValue(s.Command, "nats-url")
			for _, raw := range strings.Split(v, ",") {
				u, err := url.Parse(raw)
				if err != nil {
					t.Errorf("%s: --nats-url %s: %v", name, raw, err)
					continue
				}
				addrs = append(addrs, u.Host)
			}
			if stream, _ := argValue(s.Command, "nats-stream"); stream == "" {
				t.Errorf("%s: --nats-stream is empty: without a stream, publishes are not acknowledged", name)
			}
		default:
			t.Errorf("%s: --sink %q, want kafka or nats", name, sink)
		}
		for _, addr := range addrs {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				t.Errorf("%s: broker address %q: %v", name, addr, err)
				continue
			}
			dep, ok := c.Services[host]
			if !ok {
				t.Errorf("%s: broker host %s is no service", name, host)
				continue
			}
			if s.DependsOn[host].Condition != "service_healthy" {
				t.Errorf("%s: depends_on %s must have condition: service_healthy", name, host)
			}
			if !slices.Equal(dep.Profiles, s.Profiles) {
				t.Errorf("%s (profiles %v) depends on %s (profiles %v): they must start together", name, s.Profiles, host, dep.Profiles)
			}
		}
	}
	if sinks["kafka"] == "" || sinks["nats"] == "" {
		t.Errorf("want one kubestream service per sink, got %v", sinks)
	}

	t.Run("kafka", func(t *testing.T) { checkKafka(t, c, sinks["kafka"]) })
	t.Run("nats", func(t *testing.T) { checkNATS(t, c) })
}

// checkKafka checks the KRaft settings hang together: a listener that
// advertises the address kubestream dials, a controller quorum of this node.
func checkKafka(t *testing.T, c composeFile, client string) {
	k, ok := c.Services["kafka"]
	if !ok || !strings.HasPrefix(k.Image, "apache/kafka:") {
		t.Fatalf("want a service kafka with the apache/kafka image, got %+v", k)
	}
	env := k.Environment
	for _, v := range []string{"CLUSTER_ID", "KAFKA_NODE_ID", "KAFKA_PROCESS_ROLES", "KAFKA_CONTROLLER_QUORUM_VOTERS", "KAFKA_CONTROLLER_LISTENER_NAMES", "KAFKA_LISTENERS", "KAFKA_ADVERTISED_LISTENERS", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"} {
		if env[v] == "" {
			t.Errorf("kafka: %s is not set", v)
		}
	}
	if roles := strings.Split(env["KAFKA_PROCESS_ROLES"], ","); !slices.Contains(roles, "broker") || !slices.Contains(roles, "controller") {
		t.Errorf("kafka: KAFKA_PROCESS_ROLES %q, want broker,controller (single-node KRaft)", env["KAFKA_PROCESS_ROLES"])
	}
	listeners := map[string]string{} // name -> port
	for _, l := range strings.Split(env["KAFKA_LISTENERS"], ",") {
		name, addr, _ := strings.Cut(l, "://")
		_, port, _ := net.SplitHostPort(addr)
		listeners[name] = port
	}
	protocols := map[string]bool{}
	for _, m := range strings.Split(env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"], ",") {
		name, _, _ := strings.Cut(m, ":")
		protocols[name] = true
	}
	for name := range listeners {
		if !protocols[name] {
			t.Errorf("kafka: listener %s has no entry in KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", name)
		}
	}
	ctrl := env["KAFKA_CONTROLLER_LISTENER_NAMES"]
	voter := strings.SplitN(env["KAFKA_CONTROLLER_QUORUM_VOTERS"], "@", 2)
	if len(voter) != 2 || voter[0] != env["KAFKA_NODE_ID"] || voter[1] != "kafka:"+listeners[ctrl] {
		t.Errorf("kafka: KAFKA_CONTROLLER_QUORUM_VOTERS %q, want %s@kafka:%s (this node, controller listener)", env["KAFKA_CONTROLLER_QUORUM_VOTERS"], env["KAFKA_NODE_ID"], listeners[ctrl])
	}
	advertised := map[string]string{} // host:port -> listener name
	for _, l := range strings.Split(env["KAFKA_ADVERTISED_LISTENERS"], ",") {
		name, addr, _ := strings.Cut(l, "://")
		advertised[addr] = name
		_, port, _ := net.SplitHostPort(addr)
		if listeners[name] != port {
			t.Errorf("kafka: advertised %s on port %s, but listener %s is on port %q", l, port, name, listeners[name])
		}
		if name == ctrl {
			t.Errorf("kafka: the controller listener %s must not be advertised to clients", name)
		}
	}
	brokers, _ := argValue(c.Services[client].Command, "kafka-brokers")
	for _, b := range strings.Split(brokers, ",") {
		if _, ok := advertised[b]; !ok {
			t.Errorf("%s dials %s, which kafka does not advertise (%s): metadata would send it elsewhere", client, b, env["KAFKA_ADVERTISED_LISTENERS"])
		}
	}
	if !slices.Contains(k.Healthcheck.Test, "localhost:"+listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]) {
		t.Errorf("kafka: healthcheck %v should ask the broker listener on localhost:%s", k.Healthcheck.Test, listeners[env["KAFKA_INTER_BROKER_LISTENER_NAME"]])
	}
	if src, _, ok := volumeSource(k, env["KAFKA_LOG_DIRS"]); !ok || !hasKey(c.Volumes, src) {
		t.Errorf("kafka: KAFKA_LOG_DIRS %q is not on a named volume", env["KAFKA_LOG_DIRS"])
	}
}

func hasKey(m map[string]any, k string) bool { _, ok := m[k]; return ok }

// checkNATS runs the compose file's NATS command line and configuration with
// this machine's nats-server and asks the health check's URL.
func checkNATS(t *testing.T, c composeFile) {
	n, ok := c.Services["nats"]
	if !ok || !strings.HasPrefix(n.Image, "nats:") || len(n.Profiles) == 0 {
		t.Fatalf("want a service nats with the nats image under a profile, got %+v", n)
	}
	if !slices.Contains(n.Command, "-js") && !slices.Contains(n.Command, "--jetstream") {
		t.Errorf("nats: command %v does not enable JetStream (-js)", n.Command)
	}
	dir := t.TempDir()
	args := slices.Clone(n.Command)
	for i, a := range args {
		if !strings.HasPrefix(a, "/") {
			continue
		}
		src, _, ok := volumeSource(n, a)
		if !ok {
			t.Fatalf("nats: command path %s is on no volume", a)
		}
		if strings.HasPrefix(src, "./") {
			args[i] = filepath.Join(repoRoot(t), src) // a file of this repository
		} else {
			args[i] = filepath.Join(dir, "volume-"+src) // a named volume
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	args = append(args, "-a", "127.0.0.1", "-p", fmt.Sprint(ports[0]), "-m", fmt.Sprint(ports[1]))
	// The local nats-server stands in for the image's: flags and the
	// configuration file are the same across 2.x.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "nats-server", args...)
	logs, err := os.Create(filepath.Join(dir, "nats.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server (apt-get install nats-server): %v", err)
	}
	defer func() { cancel(); _ = cmd.Wait() }()

	var check string
	for _, a := range n.Healthcheck.Test {
		if strings.HasPrefix(a, "http://localhost:8222/") {
			check = strings.Replace(a, "localhost:8222", fmt.Sprintf("127.0.0.1:%d", ports[1]), 1)
		}
	}
	if check == "" {
		t.Fatalf("nats: healthcheck %v does not ask the monitoring port (http://localhost:8222/...)", n.Healthcheck.Test)
	}
	if !slices.Contains(n.Ports, "8222:8222") {
		t.Errorf("nats: ports %v do not publish the monitoring port 8222", n.Ports)
	}
	var status int
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if resp, err := http.Get(check); err == nil {
			resp.Body.Close()
			if status = resp.StatusCode; status == http.StatusOK {
				break
			}
		}
	}
	if status != http.StatusOK {
		b, _ := os.ReadFile(logs.Name())
		t.Fatalf("nats: health check %s never answered 200 (last %d); server log:\n%s", check, status, b)
	}
	var varz struct {
		MaxPayload int `json:"max_payload"`
		JetStream  struct {
			Config *struct {
				StoreDir string `json:"store_dir"`
			} `json:"config"`
		} `json:"jetstream"`
	}
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", ports[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&varz); err != nil {
		t.Fatal(err)
	}
	if varz.JetStream.Config == nil || !strings.HasPrefix(varz.JetStream.Config.StoreDir, dir) {
		t.Errorf("nats: JetStream not on, or not storing on the data volume: %+v", varz.JetStream.Config)
	}
	if varz.MaxPayload < 8<<20 {
		t.Errorf("nats: max_payload %d, want at least 8 MiB (an update carries two states of an object up to 1.5 MiB)", varz.MaxPayload)
	}
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
