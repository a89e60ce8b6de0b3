package change

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Objects of one kind in a cluster are very alike: a pod's encoding shares
// most of its bytes with its siblings' (image, probes, ports, tolerations,
// owner, labels). Compressed with a dictionary made of the kind's own
// objects, a cached pod takes a tenth of its encoding. The dictionary is
// built once per kind from the objects it has seen when compression starts;
// objects cached before that stay as they came.
//
// Reading a compressed object's bytes decompresses them (well under a
// microsecond for a pod); compressing one costs a few microseconds, paid
// once per state that stays cached.

const (
	// dictionarySamples is how many recent objects make up a dictionary.
	dictionarySamples = 32
	// maxDictionaryBytes caps the dictionary (and the matching window).
	maxDictionaryBytes = 64 << 10
	// maxWarm caps the objects waiting to turn cold, so a burst (a list of
	// 100 000) is compressed as it arrives, a thousand objects behind.
	maxWarm = 1024
)

// packer compresses one kind's encodings once the kind has had enough
// objects to pay for an encoder (about 750 KB of tables), and only once an
// object has been cached for a while: the events of a new state read it
// uncompressed, and a state replaced meanwhile (a pod's quick succession
// of updates) is never compressed at all.
type packer struct {
	// after is the number of objects after which compression starts;
	// coldAfter how long an object is cached before it is compressed.
	after     int
	coldAfter time.Duration

	mu      sync.Mutex
	seen    int
	samples [][]byte // the most recent objects, until the dictionary exists
	warm    []warmObject
	timer   *time.Timer // flushes warm objects when no new ones come
	scratch []byte

	dict atomic.Pointer[dictionary]
}

// warmObject is a cached object not compressed yet.
type warmObject struct {
	c  *Compact
	at time.Time
}

// dictionary compresses and decompresses with one kind's sample objects.
type dictionary struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// encoding is a Compact's bytes, swapped whole when they are compressed.
type encoding struct {
	b      []byte
	packed bool
}

// WithCompression makes the codec compress the encodings it keeps, once it
// has built after objects (lists count each item), each object coldAfter
// after it was built unless it was retired meanwhile (Retire). Call before
// use.
func (cd *Codec) WithCompression(after int, coldAfter time.Duration) *Codec {
	cd.packer = &packer{after: after, coldAfter: coldAfter}
	return cd
}

// pack stores raw into c as it is (a copy when raw is borrowed; otherwise
// raw must not be modified afterwards), to be compressed once cold.
func (cd *Codec) pack(c *Compact, raw []byte, borrowed bool) {
	if borrowed {
		raw = bytes.Clone(raw)
	}
	c.enc.Store(&encoding{b: raw})
	if cd.packer != nil {
		cd.packer.add(c, raw)
	}
}

// Retire says the cache no longer holds c (a newer state replaced it, or
// it was deleted): it is not worth compressing any more.
func Retire(o Object) {
	if c, ok := o.(*Compact); ok {
		c.retired.Store(true)
	}
}

// add queues a new object to be compressed once cold, and compresses those
// that are.
func (p *packer) add(c *Compact, raw []byte) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.dict.Load() == nil && p.observe(raw) == nil {
		return
	}
	p.warm = append(p.warm, warmObject{c: c, at: now})
	p.compressCold(now)
}

// compressCold compresses the warm objects that are cold by now, or over
// maxWarm, and arms the timer for the rest. Caller holds mu.
func (p *packer) compressCold(now time.Time) {
	d := p.dict.Load()
	n := 0
	for ; n < len(p.warm); n++ {
		w := p.warm[n]
		if now.Sub(w.at) < p.coldAfter && len(p.warm)-n <= maxWarm {
			break
		}
		if w.c.retired.Load() {
			continue
		}
		// Encoded into scratch, then copied: the cache keeps exactly
		// the compressed bytes (a tenth of the encoding), not a buffer
		// sized for the worst case.
		e := w.c.enc.Load()
		p.scratch = d.enc.EncodeAll(e.b, p.scratch[:0])
		w.c.enc.Store(&encoding{b: bytes.Clone(p.scratch), packed: true})
	}
	clear(p.warm[:n])
	p.warm = p.warm[n:]
	if len(p.warm) == 0 {
		p.warm = nil // let the backing array go
		return
	}
	if p.timer == nil {
		p.timer = time.AfterFunc(p.coldAfter, p.flush)
	} else {
		p.timer.Reset(p.warm[0].at.Add(p.coldAfter).Sub(now))
	}
}

// flush compresses what turned cold while no new objects came.
func (p *packer) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.compressCold(time.Now())
}

// observe counts an object and builds the dictionary when it is time.
// Caller holds mu.
func (p *packer) observe(raw []byte) *dictionary {
	p.seen++
	if len(p.samples) == dictionarySamples {
		copy(p.samples, p.samples[1:])
		p.samples = p.samples[:dictionarySamples-1]
	}
	p.samples = append(p.samples, raw)
	if p.seen < p.after {
		return nil
	}
	d, err := newDictionary(p.samples)
	p.samples = nil
	if err != nil {
		// Compression only saves memory: objects stay as they came, and
		// sampling stops.
		p.after = int(^uint(0) >> 1)
		return nil
	}
	p.dict.Store(d)
	return d
}

func newDictionary(samples [][]byte) (*dictionary, error) {
	// As many of the newest samples as fit, the newest last: matches
	// nearby are the cheapest to encode.
	first, size := len(samples), 0
	for first > 0 && size+len(samples[first-1]) <= maxDictionaryBytes {
		first--
		size += len(samples[first])
	}
	content := make([]byte, 0, size)
	for _, s := range samples[first:] {
		content = append(content, s...)
	}
	if len(content) == 0 {
		return nil, errors.New("no samples to build a dictionary from")
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderDictRaw(1, content),
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false),
		zstd.WithLowerEncoderMem(true),
		zstd.WithWindowSize(maxDictionaryBytes))
	if err != nil {
		return nil, fmt.Errorf("build encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderDictRaw(1, content),
		zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderLowmem(true))
	if err != nil {
		return nil, fmt.Errorf("build decoder: %w", err)
	}
	return &dictionary{enc: enc, dec: dec}, nil
}

// Bytes is the object's encoding (Kubernetes protobuf, or JSON when JSON()
// says so), decompressed when the cache keeps it compressed. Callers must
// not modify it.
func (c *Compact) Bytes() []byte {
	e := c.enc.Load()
	if e == nil { // a zero Compact (an informer's example object)
		return nil
	}
	if !e.packed {
		return e.b
	}
	raw, err := c.codec.packer.dict.Load().dec.DecodeAll(e.b, nil)
	if err != nil {
		// The bytes were compressed by this process with this
		// dictionary: failing to decompress them is a bug.
		panic(fmt.Sprintf("decompress cached %s %s/%s: %v", c.codec.kind, c.namespace, c.name, err))
	}
	return raw
}

// StoredBytes is how many bytes the cache keeps for the object's encoding.
func (c *Compact) StoredBytes() int {
	if e := c.enc.Load(); e != nil {
		return len(e.b)
	}
	return 0
}
