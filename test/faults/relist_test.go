package faults

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubestream/kubestream/internal/controlplane"
	"github.com/kubestream/kubestream/internal/testbin"
)

// TestRelistAfterWatchGap cuts kubestream off the apiserver (a TCP proxy
// closes every connection and refuses new ones) while config maps and pods
// are deleted, deleted and re-created under the same name (new uid),
// updated and created, and until etcd has compacted past the last revision
// kubestream saw. The apiserver runs without a watch cache, so kubestream's
// re-watch from its old resourceVersion gets 410 Gone ("too old resource
// version") and client-go relists. The deletes seen only through that relist
// must reach the consumer as DELETED, including the old uid of every
// re-created name, and the consumer must end exact. --resync 0: no replay
// round can paper over a missing delete.
func TestRelistAfterWatchGap(t *testing.T) {
	ctx, logTook := begin(t, 3*time.Minute)
	s := seed(t)
	const ns = "faults-relist"
	cp, client := testbin.StartControlPlane(ctx, t, ns, "--watch-cache=false", "--etcd-compaction-interval=1s")
	kc := newKafka(t)

	u, err := url.Parse(cp.URL)
	if err != nil {
		t.Fatal(err)
	}
	px := newProxy(t, u.Host)
	kubeconfig := proxiedKubeconfig(t, cp, px.addr)

	cms := newChurner(client, ns, "configmaps", "cm", 100, s)
	pods := newChurner(client, ns, "pods", "pod", 100, s+1)
	if err := cms.populate(ctx, 60); err != nil {
		t.Fatal(err)
	}
	if err := pods.populate(ctx, 30); err != nil {
		t.Fatal(err)
	}

	r := newReader(ctx, t, kc.ListenAddrs())
	// The reflector logs "Watch closed ... too old resource version" at V(4).
	b := startBinary(t, kubeconfig, kc.ListenAddrs(), ns, "--resync", "0", "--vmodule", "reflector=4")
	b.awaitReadyz(ctx, t, http.StatusOK, 60*time.Second, "after the initial round")
	r.awaitInitialRound(ctx, t, b)

	// Live changes while connected, so the gap starts from a watch that
	// has made progress.
	for i := 0; i < 40; i++ {
		if err := cms.step(ctx); err != nil {
			t.Fatal(err)
		}
		if err := pods.step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	awaitExact(ctx, t, r, client, ns, b, 60*time.Second, quiescence{settle: time.Second, quiet: time.Second})
	before, err := listTruth(ctx, client, ns)
	if err != nil {
		t.Fatal(err)
	}

	// The gap.
	px.cut()
	gapStart := time.Now()
	cmList, err := client.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	lastSeenRV := cmList.ResourceVersion // kubestream cannot have seen anything later
	var gone []string                    // uids deleted during the gap
	live := func(c *churner) []string {
		var names []string
		for i := 0; i < c.names; i++ {
			if c.live[c.name(i)] {
				names = append(names, c.name(i))
			}
		}
		return names
	}
	uidOf := func(kind, name string) string {
		for uid, o := range before {
			if o.key == kind+"/"+ns+"/"+name {
				return uid
			}
		}
		t.Fatalf("%s %s not found before the gap", kind, name)
		return ""
	}
	gapChanges := func(c *churner, n int) {
		names := live(c)
		if len(names) < 4*n {
			t.Fatalf("%s: %d live, need %d", c.kind, len(names), 4*n)
		}
		for i, name := range names[:3*n] {
			var err error
			switch i / n {
			case 0:
				gone = append(gone, uidOf(c.kind, name))
				err = c.delete(ctx, name)
			case 1:
				gone = append(gone, uidOf(c.kind, name))
				err = c.recreate(ctx, name)
			case 2:
				err = c.update(ctx, name)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		created := 0
		for i := 0; i < c.names && created < n; i++ {
			if !c.live[c.name(i)] {
				if err := c.create(ctx, c.name(i)); err != nil {
					t.Fatal(err)
				}
				created++
			}
		}
	}
	gapChanges(cms, 8)
	gapChanges(pods, 4)
	t.Logf("during the gap: %d uids deleted (%d of them names re-created under a new uid); %s; %s", len(gone), len(gone)/2, cms, pods)

	// Wait until a watch from the last revision kubestream can have seen
	// answers 410 Gone: etcd has compacted past it.
	compacted := awaitCompacted(ctx, t, client, ns, lastSeenRV)
	time.Sleep(time.Second)
	px.heal(t)
	t.Logf("gap of %s; a watch from rv %s got %s", time.Since(gapStart).Round(time.Millisecond), lastSeenRV, compacted)

	v := awaitExact(ctx, t, r, client, ns, b, 90*time.Second, quiescence{settle: 2 * time.Second, quiet: 2 * time.Second})
	for _, uid := range gone {
		r.mu.Lock()
		deleted, hist := r.store.Deleted(judgedCluster, uid), r.history[uid]
		r.mu.Unlock()
		if !deleted {
			t.Errorf("uid %s (%s) deleted during the gap has no DELETED; events: %v", uid, before[uid].key, hist)
		}
	}
	r.mu.Lock()
	fsu := len(r.fsuDeletes)
	r.mu.Unlock()
	out := b.stderr.String()
	// client-go's reflector, at V(4): "Watch closed" ... err="The
	// resourceVersion for the provided watch is too old." (410 Expired),
	// then "Listing and watching" again: the relist.
	tooOld := grepCount(out, regexp.MustCompile(`"Watch closed".*too old`))
	relists := grepCount(out, regexp.MustCompile(`"Listing and watching"`)) - 2 // two kinds list at start
	t.Logf("relist evidence: %d re-watches refused as too old, %d relists, %d DELETED with final_state_unknown", tooOld, relists, fsu)
	if tooOld == 0 {
		t.Errorf("kubestream's reflectors never logged a watch closed as too old: the re-watch was not refused with 410\nkubestream output:\n%s", b.tail(60))
	}
	if relists < 1 {
		t.Errorf("kubestream's reflectors did not list again after the gap\nkubestream output:\n%s", b.tail(60))
	}
	if fsu == 0 {
		t.Errorf("no DELETED with final_state_unknown: the deletes did not come from a relist")
	}
	t.Logf("consumer %d objects, apiserver %d objects, deleted %d (gap deletes %d, proxy cuts %d)", v.consumer, v.apiserver, v.deleted, len(gone), px.cuts)
	b.stop(t)
	logTook()
}

// proxiedKubeconfig writes an admin kubeconfig for cp that reaches the
// apiserver through addr (TLS passes through the proxy untouched).
func proxiedKubeconfig(t *testing.T, cp *controlplane.ControlPlane, addr string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["proxied"] = &clientcmdapi.Cluster{Server: "https://" + addr, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{Token: cp.Token}
	cfg.Contexts["proxied"] = &clientcmdapi.Context{Cluster: "proxied", AuthInfo: "admin"}
	cfg.CurrentContext = "proxied"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// awaitCompacted polls a watch of config maps from rv until the apiserver
// answers it with 410 Gone, and returns that status.
func awaitCompacted(ctx context.Context, t *testing.T, client kubernetes.Interface, ns, rv string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		w, err := client.CoreV1().ConfigMaps(ns).Watch(wctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			cancel()
			t.Fatalf("watch from rv %s: %v", rv, err)
		}
		var got string
	events:
		for {
			select {
			case ev, ok := <-w.ResultChan():
				if !ok {
					break events
				}
				if ev.Type == watch.Error {
					if st, ok := ev.Object.(*metav1.Status); ok && st.Code == http.StatusGone {
						got = fmt.Sprintf("%d %s: %s", st.Code, st.Reason, st.Message)
					}
					break events
				}
			case <-wctx.Done():
				break events
			}
		}
		w.Stop()
		cancel()
		if got != "" {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("etcd did not compact past rv %s within 30s", rv)
	return ""
}
