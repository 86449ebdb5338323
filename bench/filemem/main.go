//go:build unix

// Command filemem measures hartvault's wall time and peak memory (max RSS) backing up
// and restoring a file tree of a given size (2 GiB by default) on a file:// repository,
// and checks the restore byte for byte. Not a test: run it by hand.
//
//	go run ./bench/filemem [-size 2GiB] [-dir /tmp/bench] [-keep]
package main

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

func main() {
	size := flag.Int64("size", 2<<30, "bytes of data in the tree")
	dir := flag.String("dir", "", "work directory (default a new temp dir)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	if err := run(*size, *dir, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "filemem:", err)
		os.Exit(1)
	}
}

func run(size int64, dir string, keep bool) error {
	var err error
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hartvault-filemem"); err != nil {
			return err
		}
	}
	if !keep {
		defer os.RemoveAll(dir)
	}
	bin := filepath.Join(dir, "hartvault")
	if out, err := exec.Command("go", "build", "-o", bin, "./cmd/hartvault").CombinedOutput(); err != nil {
		return fmt.Errorf("build: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "tree")
	files, err := makeTree(src, size)
	if err != nil {
		return err
	}
	plan := filepath.Join(dir, "hartvault.yaml")
	os.WriteFile(plan, []byte(fmt.Sprintf(`repository:
  url: file://%s/repo
  passphrase_env: HARTVAULT_PASSPHRASE
sources:
  - name: tree
    kind: files
    paths: [%s]
`, dir, src)), 0o644)
	env := append(os.Environ(), "HARTVAULT_PASSPHRASE=bench")
	hv := func(args ...string) (time.Duration, int64, error) {
		c := exec.Command(bin, append([]string{"--config", plan, "-q"}, args...)...)
		c.Env = env
		c.Stderr = os.Stderr
		start := time.Now()
		out, err := c.Output()
		wall := time.Since(start)
		if err != nil {
			return 0, 0, fmt.Errorf("hartvault %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		ru := c.ProcessState.SysUsage().(*syscall.Rusage)
		return wall, ru.Maxrss * 1024, nil
	}
	if _, _, err := hv("init"); err != nil {
		return err
	}
	syncFS()
	bw, brss, err := hv("backup", "tree")
	if err != nil {
		return err
	}
	stored := dirSize(filepath.Join(dir, "repo", "data"))
	target := filepath.Join(dir, "restore")
	syncFS()
	rw, rrss, err := hv("restore", "tree", "--target", target)
	if err != nil {
		return err
	}
	if err := compare(src, filepath.Join(target, "tree")); err != nil {
		return err
	}
	fmt.Printf("tree: %d files, %.2f GiB; stored %.2f GiB (zstd 3 + age)\n", files, float64(size)/(1<<30), float64(stored)/(1<<30))
	fmt.Printf("%-8s %10s %12s %14s\n", "step", "wall", "peak RSS", "throughput")
	fmt.Printf("%-8s %10s %9.1f MB %9.0f MB/s\n", "backup", bw.Round(10*time.Millisecond), float64(brss)/1e6, float64(size)/1e6/bw.Seconds())
	fmt.Printf("%-8s %10s %9.1f MB %9.0f MB/s\n", "restore", rw.Round(10*time.Millisecond), float64(rrss)/1e6, float64(size)/1e6/rw.Seconds())
	fmt.Println("restore identical to the source: yes")
	return nil
}

// makeTree writes files of mixed sizes (many small, some large) whose content
// compresses about as well as binaries and data files do.
func makeTree(root string, total int64) (int, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var written int64
	n := 0
	buf := make([]byte, 1<<20)
	for written < total {
		var sz int64
		switch r := rng.IntN(100); {
		case r < 70:
			sz = int64(rng.IntN(64 << 10))
		case r < 95:
			sz = int64(rng.IntN(8 << 20))
		default:
			sz = int64(64<<20 + rng.IntN(256<<20))
		}
		sz = min(sz, total-written)
		p := filepath.Join(root, fmt.Sprintf("d%03d", n%200), fmt.Sprintf("f%06d.bin", n))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return 0, err
		}
		f, err := os.Create(p)
		if err != nil {
			return 0, err
		}
		for left := sz; left > 0; {
			chunk := min(left, int64(len(buf)))
			fill(rng, buf[:chunk])
			if _, err := f.Write(buf[:chunk]); err != nil {
				f.Close()
				return 0, err
			}
			left -= chunk
		}
		if err := f.Close(); err != nil {
			return 0, err
		}
		written += sz
		n++
	}
	return n, nil
}

func fill(rng *rand.Rand, b []byte) {
	for i := 0; i < len(b); i += 4096 {
		end := min(i+4096, len(b))
		if rng.IntN(3) == 0 {
			for j := i; j < end; j += 8 {
				v := rng.Uint64()
				for k := 0; k < 8 && j+k < end; k++ {
					b[j+k] = byte(v >> (8 * k))
				}
			}
		} else {
			c := byte(rng.IntN(256))
			for j := i; j < end; j++ {
				b[j] = c + byte(j%7)
			}
		}
	}
}

func dirSize(root string) int64 {
	var n int64
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func compare(a, b string) error {
	return filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(a, p)
		ha, err := hashFile(p)
		if err != nil {
			return err
		}
		hb, err := hashFile(filepath.Join(b, rel))
		if err != nil {
			return err
		}
		if ha != hb {
			return fmt.Errorf("restored %s differs", rel)
		}
		return nil
	})
}

func hashFile(p string) ([32]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return [32]byte{}, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return [32]byte{}, err
	}
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s, nil
}

func syncFS() { exec.Command("sync").Run() }
