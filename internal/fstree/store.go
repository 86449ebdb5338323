package fstree

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"

	"github.com/hartonomous/hartvault/internal/parallel"
	"github.com/hartonomous/hartvault/internal/repo"
)

// StoreAll runs store for every entry on parallel workers, each with its own pack
// writer, biggest files first so the workers finish together, and adds each
// resulting file to the backup. The first error stops the rest.
func StoreAll(ctx context.Context, b *repo.Backup, entries []*Entry, workers int,
	store func(pw *repo.PackWriter, en *Entry) (repo.File, error)) error {
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Size > entries[j].Size })
	return parallel.Run(ctx, entries, workers, func(ctx context.Context) parallel.Worker[*Entry] {
		pw := b.NewPackWriter(ctx)
		return parallel.Worker[*Entry]{
			Do: func(en *Entry) error {
				f, err := store(pw, en)
				if err != nil {
					return err
				}
				b.AddBytes(f.Size)
				b.AddFile(f)
				return nil
			},
			Finish: func() error { return closePack(pw) },
		}
	})
}

// closePack seals a worker's open volume (discarding it if that fails).
func closePack(pw *repo.PackWriter) error {
	if err := pw.Close(); err != nil {
		pw.Abort()
		return err
	}
	return nil
}

// StoreWhole packs one file's whole content. A file that changes size while it is
// read is stored as read, and its recorded size follows what was stored.
func StoreWhole(pw *repo.PackWriter, en *Entry, progress func(int64)) (repo.File, error) {
	return storeWhole(pw, en, progress, nil)
}

func storeWhole(pw *repo.PackWriter, en *Entry, progress func(int64), tap Tap) (repo.File, error) {
	fh, err := os.Open(en.Abs)
	if err != nil {
		return repo.File{}, fmt.Errorf("read %s: %w", en.Abs, err)
	}
	defer fh.Close()
	exts, err := pw.Write(&progressReader{r: tapped(fh, en, 0, tap), add: progress}, 0)
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

// chunkJob is a byte range of a file to store.
type chunkJob struct {
	en       *Entry
	off, len int64
	parts    *filePieces
}

// filePieces collects the extents of a file stored in pieces by several workers.
type filePieces struct {
	mu      sync.Mutex
	left    int
	extents []repo.Extent
	size    int64
}

// Tap, when it returns a writer for a range of a file starting at off, is given
// the range's bytes exactly as they are stored (an engine records what it needs of
// the copy, such as page flags, without reading the file twice). Ranges start at
// multiples of the chunk size.
type Tap func(en *Entry, off int64) io.Writer

func tapped(r io.Reader, en *Entry, off int64, tap Tap) io.Reader {
	if tap == nil {
		return r
	}
	if w := tap(en, off); w != nil {
		return io.TeeReader(r, w)
	}
	return r
}

// StoreChunked stores whole files like StoreAll with StoreWhole, but cuts files
// larger than chunk into ranges stored by whichever worker is free, so one big file
// (a 1 GiB relation segment) does not leave the other workers idle at the end.
// tap may be nil.
func StoreChunked(ctx context.Context, b *repo.Backup, entries []*Entry, workers int, chunk int64, progress func(int64), tap Tap) error {
	var jobs []chunkJob
	for _, en := range entries {
		if en.Size <= chunk {
			jobs = append(jobs, chunkJob{en: en, len: -1})
			continue
		}
		n := int((en.Size + chunk - 1) / chunk)
		fp := &filePieces{left: n}
		for i := 0; i < n; i++ {
			jobs = append(jobs, chunkJob{en: en, off: int64(i) * chunk, len: chunk, parts: fp})
		}
	}
	// Biggest first so the workers finish together; the pieces of a file in order.
	sort.SliceStable(jobs, func(i, j int) bool { return jobSize(jobs[i]) > jobSize(jobs[j]) })
	return parallel.Run(ctx, jobs, workers, func(ctx context.Context) parallel.Worker[chunkJob] {
		pw := b.NewPackWriter(ctx)
		return parallel.Worker[chunkJob]{
			Do: func(j chunkJob) error {
				if j.parts == nil {
					f, err := storeWhole(pw, j.en, progress, tap)
					if err != nil {
						return err
					}
					b.AddBytes(f.Size)
					b.AddFile(f)
					return nil
				}
				exts, err := storeRange(pw, j, progress, tap)
				if err != nil {
					return err
				}
				if f, done := j.parts.add(j.en, exts); done {
					b.AddBytes(f.Size)
					b.AddFile(f)
				}
				return nil
			},
			Finish: func() error { return closePack(pw) },
		}
	})
}

func jobSize(j chunkJob) int64 {
	if j.len < 0 {
		return j.en.Size
	}
	return j.len
}

// storeRange packs one range of a file. The last range reads to the end, so a file
// that grew while it was read is stored as read.
func storeRange(pw *repo.PackWriter, j chunkJob, progress func(int64), tap Tap) ([]repo.Extent, error) {
	fh, err := os.Open(j.en.Abs)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", j.en.Abs, err)
	}
	defer fh.Close()
	var r io.Reader = io.NewSectionReader(fh, j.off, j.len)
	if j.off+j.len >= j.en.Size {
		r = io.NewSectionReader(fh, j.off, 1<<62)
	}
	exts, err := pw.Write(&progressReader{r: tapped(r, j.en, j.off, tap), add: progress}, j.off)
	if err != nil {
		return nil, fmt.Errorf("back up %s: %w", j.en.Abs, err)
	}
	return exts, nil
}

// add records a finished piece; the last one returns the whole file.
func (fp *filePieces) add(en *Entry, exts []repo.Extent) (repo.File, bool) {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	fp.extents = append(fp.extents, exts...)
	for _, x := range exts {
		fp.size = max(fp.size, x.Offset+x.Length)
	}
	fp.left--
	if fp.left > 0 {
		return repo.File{}, false
	}
	sort.Slice(fp.extents, func(i, j int) bool { return fp.extents[i].Offset < fp.extents[j].Offset })
	f := en.File
	f.Extents, f.Size = fp.extents, fp.size
	if len(f.Extents) == 1 {
		f.SHA256 = f.Extents[0].SHA256
	}
	return f, true
}
