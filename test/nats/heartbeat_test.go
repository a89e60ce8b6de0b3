package nats

import (
	"context"
	"encoding/base64"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/resourceversion"

	"github.com/kubestream/kubestream/internal/testbin"
	"github.com/kubestream/kubestream/pkg/api/kubestreamv1"
	"github.com/kubestream/kubestream/pkg/sink/nats/natstest"
)

// TestHeartbeatsAndConfigMapKeysThroughNATS runs the binary against the real
// apiserver and a nats-server process with --heartbeat-interval 1s,
// --configmap-data keys and JSON object states: heartbeats arrive on
// <prefix>.heartbeat.configmaps carrying the kind's resourceVersion, the
// first one at or past a config map's resourceVersion comes after its event
// in the JetStream stream (read back with kubestream tail), and the config
// map's value appears nowhere in the stream.
func TestHeartbeatsAndConfigMapKeysThroughNATS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	bin := testbin.BuildForTest(t)
	const ns = "nats-heartbeat"
	cp, client := testbin.StartControlPlane(ctx, t, ns)
	srv := natstest.StartProcess(t, natstest.ProcessOptions{})
	home := t.TempDir()

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("kubestream.heartbeat.>")
	if err != nil {
		t.Fatal(err)
	}
	run := start(t, bin, home, nil, "run", "--kubeconfig", cp.Kubeconfig, "--kinds", "configmaps", "--namespace", ns, "--resync", "0",
		"--listen-address", "", "--sink", "nats", "--nats-url", srv.URL(), "--nats-stream", "HB", "--nats-stream-create",
		"--heartbeat-interval", "1s", "--configmap-data", "keys", "--content-type", "json")
	run.waitFor(ctx, t, "Publishing to JetStream")

	const secret = "token-3f9a2c7d1e8b"
	cm, err := client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Data: map[string]string{"api.token": secret}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// A heartbeat on its subject, read as published.
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		t.Fatalf("no heartbeat on kubestream.heartbeat.>: %v\n%s", err, run.stderr.String())
	}
	if msg.Subject != "kubestream.heartbeat.configmaps" || msg.Header.Get("ks-op") != "heartbeat" {
		t.Fatalf("heartbeat on %s with ks-op %q, want kubestream.heartbeat.configmaps and heartbeat", msg.Subject, msg.Header.Get("ks-op"))
	}
	hb := &kubestreamv1.Event{}
	if err := proto.Unmarshal(msg.Data, hb); err != nil || hb.GetHeartbeat().GetResourceVersion() == "" {
		t.Fatalf("heartbeat message %v (%v): want a resourceVersion", hb, err)
	}

	// The stream as stored: the config map's event, then a heartbeat that
	// covers it.
	events, tail := tailEvents(t, bin, home, "--nats-url", srv.URL(), "--nats-stream", "HB")
	var sawCM bool
	for {
		var ev *kubestreamv1.Event
		select {
		case ev = <-events:
		case <-ctx.Done():
			t.Fatalf("no covering heartbeat; run:\n%s\ntail:\n%s", run.stderr.String(), tail.stderr.String())
		}
		if ev == nil {
			t.Fatalf("tail ended:\n%s", tail.stderr.String())
		}
		b, _ := proto.Marshal(ev)
		js := string(ev.GetChange().GetObject())
		if strings.Contains(string(b), secret) || strings.Contains(js, secret) || strings.Contains(string(b), base64.StdEncoding.EncodeToString([]byte(secret))) {
			t.Fatalf("the config map's value reached the stream with --configmap-data keys: %v", ev)
		}
		if ev.GetObject().GetUid() == string(cm.UID) {
			sawCM = true
			if !strings.Contains(js, `"api.token":""`) || ev.GetChange().GetConfigMap().GetValueSizes()["api.token"] != int64(len(secret)) {
				t.Fatalf("config map event: object %s, sizes %v; want the key with an empty value and its real size", js, ev.GetChange().GetConfigMap().GetValueSizes())
			}
		}
		h := ev.GetHeartbeat()
		if h == nil {
			continue
		}
		c, err := resourceversion.CompareResourceVersion(h.GetResourceVersion(), cm.ResourceVersion)
		if err != nil {
			t.Fatal(err)
		}
		if c >= 0 {
			if !sawCM {
				t.Fatalf("heartbeat at %s before the config map's event (resourceVersion %s)", h.GetResourceVersion(), cm.ResourceVersion)
			}
			t.Logf("heartbeat %v after the config map at %s", h, cm.ResourceVersion)
			return
		}
	}
}
