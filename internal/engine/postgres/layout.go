package postgres

import (
	"encoding/binary"
	"io/fs"
	"path"
	"regexp"
	"strconv"
	"strings"
)

// What a base backup must not copy, as pg_basebackup decides (basebackup.c).
var (
	// Directories whose contents are recreated at startup (the directories stay).
	excludedDirContents = map[string]bool{
		"pg_wal": true, "pg_stat_tmp": true, "pg_replslot": true, "pg_dynshmem": true,
		"pg_notify": true, "pg_serial": true, "pg_snapshots": true, "pg_subtrans": true,
	}
	// Files never copied, wherever they are.
	excludedFiles = map[string]bool{
		"postgresql.auto.conf.tmp": true, "current_logfiles.tmp": true, "pg_internal.init": true,
		"backup_label": true, "tablespace_map": true, "backup_manifest": true,
		"postmaster.pid": true, "postmaster.opts": true,
	}
	// base/<db>/<relfilenode>[_fork][.segno], global/..., and the same under a tablespace.
	relFileRE = regexp.MustCompile(`^(?:base/\d+|global|pg_tblspc/\d+/[^/]+/\d+)/(t\d+_)?(\d+)(?:_(fsm|vm|init))?(?:\.(\d+))?$`)
)

// relFile describes a relation data file.
type relFile struct {
	dir         string
	relfilenode string
	fork        string // "" for main
	segno       int
	temp        bool
}

func parseRelFile(p string) (relFile, bool) {
	m := relFileRE.FindStringSubmatch(p)
	if m == nil {
		return relFile{}, false
	}
	seg := 0
	if m[4] != "" {
		seg, _ = strconv.Atoi(m[4])
	}
	return relFile{dir: path.Dir(p), relfilenode: m[2], fork: m[3], segno: seg, temp: m[1] != ""}, true
}

// pageLSNFork reports whether a diff may take a fork's pages from the full by page
// LSN. Only the main fork: the visibility map's bits are cleared without moving its
// page LSN, the free space map is not WAL-logged, and init forks are written before
// their LSN is set (and are tiny). See docs/postgres.md.
func pageLSNFork(fork string) bool {
	if takenScheme < schemeExact {
		return fork == "" || fork == "vm" || fork == "init"
	}
	return fork == ""
}

// skipper decides what a scan of the data directory leaves out. unlogged holds the
// directory/relfilenode pairs that have an init fork: their other forks are
// rebuilt from it at startup and must not be copied.
type skipper struct {
	unlogged map[string]bool
}

func (s *skipper) skip(rel string, d fs.DirEntry) bool {
	base := path.Base(rel)
	if excludedFiles[base] || strings.HasPrefix(base, "pgsql_tmp") {
		return true
	}
	if dir := path.Dir(rel); excludedDirContents[dir] {
		return true // pg_wal/* and the like: the directory itself is kept
	}
	if d.IsDir() {
		return false
	}
	if rf, ok := parseRelFile(rel); ok {
		if rf.temp {
			return true
		}
		if rf.fork != "init" && s.unlogged[rf.dir+"/"+rf.relfilenode] {
			return true
		}
	}
	return false
}

// Page layout (src/include/storage/bufpage.h).
const (
	blockSize   = 8192
	relSegPages = 131072 // RELSEG_SIZE: 1 GiB segments of 8 KiB pages
)

// pageLSN reads pd_lsn.
func pageLSN(page []byte) LSN {
	return LSN(uint64(binary.LittleEndian.Uint32(page[0:4]))<<32 | uint64(binary.LittleEndian.Uint32(page[4:8])))
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// The data-page checksum (src/include/storage/checksum_impl.h): FNV-1a-like, 32
// lanes over the page as 32-bit words, the checksum field counted as zero, the
// block number mixed in, reduced modulo 65535 plus one (never zero).
const (
	checksumLanes = 32
	fnvPrime      = 16777619
)

var checksumBase = [checksumLanes]uint32{
	0x5B1F36E9, 0xB8525960, 0x02AB50AA, 0x1DE66D2A, 0x79FF467A, 0x9BB9F8A3, 0x217E7CD2, 0x83E13D2C,
	0xF8D4474F, 0xE39EB970, 0x42C6AE16, 0x993216FA, 0x7B093B5D, 0x98DAFF3C, 0xF718902A, 0x0B1C9CDB,
	0xE58F764B, 0x187636BC, 0x5D7B3BB1, 0xE73DE7DE, 0x92BEC979, 0xCCA6C0B2, 0x304A0979, 0x85AA43D4,
	0x783125BB, 0x6CA8EAA2, 0xE407EAC6, 0x4B5CFC3E, 0x9FBF8C76, 0x15CA20BE, 0xF2CA9FD3, 0x959BD756,
}

// pageChecksum computes the checksum PostgreSQL stores in pd_checksum for a page at
// block number blkno (counted from the start of the relation fork, across segments).
func pageChecksum(page []byte, blkno uint32) uint16 {
	sums := checksumBase
	for i := 0; i < blockSize/(4*checksumLanes); i++ {
		row := page[i*4*checksumLanes:]
		for j := 0; j < checksumLanes; j++ {
			v := binary.LittleEndian.Uint32(row[j*4:])
			if i == 0 && j == 2 {
				v &= 0xFFFF0000 // pd_checksum (bytes 8-9) counts as zero
			}
			t := sums[j] ^ v
			sums[j] = t*fnvPrime ^ (t >> 17)
		}
	}
	for r := 0; r < 2; r++ {
		for j := 0; j < checksumLanes; j++ {
			t := sums[j]
			sums[j] = t*fnvPrime ^ (t >> 17)
		}
	}
	var result uint32
	for _, s := range sums {
		result ^= s
	}
	result ^= blkno
	return uint16(result%65535 + 1)
}

// storedChecksum reads pd_checksum.
func storedChecksum(page []byte) uint16 { return binary.LittleEndian.Uint16(page[8:10]) }
