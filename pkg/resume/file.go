package resume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
)

// FileStore keeps positions in one JSON file, rewritten atomically (write a
// temporary file, sync, rename) on every write. For the stdout sink, whose
// output has no place for state.
type FileStore struct {
	path    string
	cluster string

	mu      sync.Mutex
	entries map[string]Entry
	loaded  bool
}

// fileFormat is the file's content.
type fileFormat struct {
	V         int              `json:"v"`
	Cluster   string           `json:"cluster"`
	Positions map[string]Entry `json:"positions"`
}

// NewFileStore returns a store in path for cluster. The directory must
// exist; the file is created on the first write.
func NewFileStore(path, cluster string) (*FileStore, error) {
	dir := filepath.Dir(path)
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("--state-file %s: directory %s does not exist", path, dir)
	}
	return &FileStore{path: path, cluster: cluster, entries: map[string]Entry{}}, nil
}

// Load reads the file; a missing file is an empty state.
func (f *FileStore) Load(context.Context) (map[string]Entry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := os.ReadFile(f.path)
	if errors.Is(err, os.ErrNotExist) {
		f.loaded = true
		return map[string]Entry{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read state file %s: %w", f.path, err)
	}
	var ff fileFormat
	if err := json.Unmarshal(b, &ff); err != nil {
		return nil, fmt.Errorf("state file %s is not kubestream state (remove it to start with a full snapshot): %w", f.path, err)
	}
	if ff.V != FormatVersion {
		return nil, fmt.Errorf("state file %s has format version %d, this kubestream reads %d", f.path, ff.V, FormatVersion)
	}
	if ff.Cluster != f.cluster {
		return nil, fmt.Errorf("state file %s belongs to cluster %q, not %q: use another --state-file per cluster", f.path, ff.Cluster, f.cluster)
	}
	f.entries = ff.Positions
	if f.entries == nil {
		f.entries = map[string]Entry{}
	}
	f.loaded = true
	out := make(map[string]Entry, len(f.entries))
	for k, e := range f.entries {
		out[k] = e
	}
	return out, nil
}

// Write applies the batch and rewrites the file.
func (f *FileStore) Write(ctx context.Context, puts map[string]Entry, deletes []string) error {
	if !f.loaded {
		if _, err := f.Load(ctx); err != nil {
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, k := range deletes {
		delete(f.entries, k)
	}
	for k, e := range puts {
		f.entries[k] = e
	}
	b, err := json.Marshal(fileFormat{V: FormatVersion, Cluster: f.cluster, Positions: f.entries})
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(f.path), filepath.Base(f.path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write state file %s: %w", f.path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write state file %s: %w", f.path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync state file %s: %w", f.path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write state file %s: %w", f.path, err)
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return fmt.Errorf("replace state file %s: %w", f.path, err)
	}
	return nil
}

// Close does nothing: every write is complete when it returns.
func (f *FileStore) Close() error { return nil }

// MemoryStore keeps positions in memory: for tests, and as the model the
// other stores must behave like.
type MemoryStore struct {
	mu      sync.Mutex
	entries map[string]Entry
	// Fail, when set, fails writes with its error.
	Fail error
}

// NewMemoryStore returns an empty store.
func NewMemoryStore() *MemoryStore { return &MemoryStore{entries: map[string]Entry{}} }

// Load returns a copy of the entries.
func (m *MemoryStore) Load(context.Context) (map[string]Entry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Entry, len(m.entries))
	for k, e := range m.entries {
		out[k] = e
	}
	return out, nil
}

// Write applies the batch.
func (m *MemoryStore) Write(_ context.Context, puts map[string]Entry, deletes []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Fail != nil {
		return m.Fail
	}
	for _, k := range deletes {
		delete(m.entries, k)
	}
	for k, e := range puts {
		m.entries[k] = e
	}
	return nil
}

// Close does nothing.
func (m *MemoryStore) Close() error { return nil }
