package fstree

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/hartonomous/hartvault/internal/repo"
)

// StoreAll runs store for every entry on parallel workers, each with its own pack
// writer, biggest files first so the workers finish together, and adds each
// resulting file to the backup. The first error stops the rest.
func StoreAll(ctx context.Context, b *repo.Backup, entries []*Entry, workers int,
	store func(pw *repo.PackWriter, en *Entry) (repo.File, error)) error {
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Size > entries[j].Size })
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	work := make(chan *Entry)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	for w := 0; w < max(workers, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pw := b.NewPackWriter(ctx)
			for en := range work {
				f, err := store(pw, en)
				if err != nil {
					fail(err)
					continue
				}
				b.AddBytes(f.Size)
				b.AddFile(f)
			}
			if err := pw.Close(); err != nil {
				fail(err)
				pw.Abort()
			}
		}()
	}
feed:
	for _, en := range entries {
		select {
		case work <- en:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// StoreWhole packs one file's whole content. A file that changes size while it is
// read is stored as read, and its recorded size follows what was stored.
func StoreWhole(pw *repo.PackWriter, en *Entry, progress func(int64)) (repo.File, error) {
	fh, err := os.Open(en.Abs)
	if err != nil {
		return repo.File{}, fmt.Errorf("read %s: %w", en.Abs, err)
	}
	defer fh.Close()
	exts, err := pw.Write(&progressReader{r: fh, add: progress}, 0)
	if err != nil {
		return repo.File{}, fmt.Errorf("back up %s: %w", en.Abs, err)
	}
	f := en.File
	f.Extents = exts
	f.Size = 0
	for _, x := range exts {
		f.Size += x.Length
	}
	// The extents' hashes cover the content; a whole-file hash would cost another
	// pass over the data, so only a single-extent file (most of them) states one.
	switch len(exts) {
	case 0:
		f.SHA256 = EmptySHA256
	case 1:
		f.SHA256 = exts[0].SHA256
	}
	return f, nil
}

// EmptySHA256 is the SHA-256 of no bytes.
const EmptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

type progressReader struct {
	r   io.Reader
	add func(int64)
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if p.add != nil {
		p.add(int64(n))
	}
	return n, err
}
