package resume_test

import (
	"net/url"
	"path/filepath"
	"testing"

	"github.com/kubestream/kubestream/pkg/resume"
	"github.com/kubestream/kubestream/pkg/resume/resumetest"
)

// The memory store is the model the others are checked against: it passes
// the suite too. Opening a cluster again returns its store.
func TestMemoryStoreConformance(t *testing.T) {
	resumetest.Conformance(t, func(t *testing.T) resumetest.Open {
		stores := map[string]*resume.MemoryStore{}
		return func(t *testing.T, cluster string) resume.Store {
			if stores[cluster] == nil {
				stores[cluster] = resume.NewMemoryStore()
			}
			return stores[cluster]
		}
	})
}

// File stores of one directory, one file per cluster (a file belongs to
// one cluster); every open is a new FileStore on that file, as a restarted
// process makes.
func TestFileStoreConformance(t *testing.T) {
	resumetest.Conformance(t, func(t *testing.T) resumetest.Open {
		dir := t.TempDir()
		return func(t *testing.T, cluster string) resume.Store {
			st, err := resume.NewFileStore(filepath.Join(dir, url.PathEscape(cluster)+".json"), cluster)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := st.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			return st
		}
	})
}
