package postgres

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// LSN is a PostgreSQL write-ahead log position.
type LSN uint64

func (l LSN) String() string { return fmt.Sprintf("%X/%X", uint64(l)>>32, uint32(l)) }

// ParseLSN reads "16/B374D848".
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	h, err1 := strconv.ParseUint(hi, 16, 32)
	l, err2 := strconv.ParseUint(lo, 16, 32)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bad LSN %q", s)
	}
	return LSN(h<<32 | l), nil
}

// Segment names: TTTTTTTTLLLLLLLLSSSSSSSS, timeline then the segment number split
// into "log" and "seg" parts by how many segments fit in 4 GiB.

func segsPerXLogID(segSize int64) uint64 { return 0x100000000 / uint64(segSize) }

// SegName names segment segno of timeline tli.
func SegName(tli uint32, segno uint64, segSize int64) string {
	per := segsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/per, segno%per)
}

// ParseSegName reads a segment file name.
func ParseSegName(name string, segSize int64) (tli uint32, segno uint64, ok bool) {
	if len(name) != 24 || !isHex(name) {
		return 0, 0, false
	}
	t, _ := strconv.ParseUint(name[0:8], 16, 32)
	log, _ := strconv.ParseUint(name[8:16], 16, 32)
	seg, _ := strconv.ParseUint(name[16:24], 16, 32)
	return uint32(t), log*segsPerXLogID(segSize) + seg, true
}

// IsHistoryName reports whether name is a timeline history file (00000002.history).
func IsHistoryName(name string) bool {
	return len(name) == 16 && strings.HasSuffix(name, ".history") && isHex(name[:8])
}

// IsBackupHistoryName reports whether name is a backup history file
// (000000010000000000000003.00000028.backup).
func IsBackupHistoryName(name string) bool {
	return len(name) == 40 && strings.HasSuffix(name, ".backup") && isHex(name[:24]) && name[24] == '.' && isHex(name[25:33])
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return len(s) > 0
}

// WAL page layout (src/include/access/xlog_internal.h).
const (
	xlpLongHeader       = 0x0002
	shortPageHeaderSize = 24
	longPageHeaderSize  = 40
	recordHeaderSize    = 24
	rmXact              = 1
	xactOpMask          = 0x70
	xactCommit          = 0x00
	xactAbort           = 0x20
	xactCommitPrepared  = 0x30
	xactAbortPrepared   = 0x40
	blockIDDataShort    = 255
	blockIDDataLong     = 254
	blockIDOrigin       = 253
	blockIDToplevelXID  = 252
)

// pgEpoch is PostgreSQL's timestamp zero.
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// SegmentHeader is what the long page header at the start of a segment says.
type SegmentHeader struct {
	Timeline  uint32
	PageAddr  LSN
	SystemID  uint64
	SegSize   uint32
	BlockSize uint32
}

// ReadSegmentHeader parses the long header of a WAL segment's first page.
func ReadSegmentHeader(seg []byte) (SegmentHeader, error) {
	if len(seg) < longPageHeaderSize {
		return SegmentHeader{}, errors.New("too short for a WAL segment")
	}
	info := binary.LittleEndian.Uint16(seg[2:4])
	if info&xlpLongHeader == 0 {
		return SegmentHeader{}, errors.New("first page has no long header: not the start of a WAL segment")
	}
	h := SegmentHeader{
		Timeline:  binary.LittleEndian.Uint32(seg[4:8]),
		PageAddr:  LSN(binary.LittleEndian.Uint64(seg[8:16])),
		SystemID:  binary.LittleEndian.Uint64(seg[24:32]),
		SegSize:   binary.LittleEndian.Uint32(seg[32:36]),
		BlockSize: binary.LittleEndian.Uint32(seg[36:40]),
	}
	if h.BlockSize == 0 || h.BlockSize&(h.BlockSize-1) != 0 || h.SegSize == 0 {
		return SegmentHeader{}, errors.New("WAL segment header is not valid")
	}
	return h, nil
}

// CommitTimes walks the records of a WAL segment (or the valid prefix of a partial
// one) and returns the times of its first and last transaction commit or abort;
// ok is false when it holds none. A record that continues into the next segment is
// not read: a commit there counts for the segment it ends in, which is the
// conservative side for a restore window.
func CommitTimes(seg []byte) (first, last time.Time, ok bool, err error) {
	h, err := ReadSegmentHeader(seg)
	if err != nil {
		return first, last, false, err
	}
	l := newLogical(seg, int(h.BlockSize), h.PageAddr)
	pos := align8(l.remLen)
	var hdr [recordHeaderSize]byte
	for {
		if !l.read(pos, hdr[:]) {
			break
		}
		totLen := int(binary.LittleEndian.Uint32(hdr[0:4]))
		if totLen < recordHeaderSize {
			break // zeroes: the end of valid WAL
		}
		// Only transaction records are read whole; others are stepped over.
		if hdr[17] == rmXact {
			rec := make([]byte, totLen)
			if !l.read(pos, rec) {
				break // continues into the next segment
			}
			if t, isXact := xactTime(rec); isXact {
				if !ok {
					first = t
				}
				last = t
				ok = true
			}
		} else if !l.has(pos + totLen) {
			break
		}
		pos += align8(totLen)
	}
	return first, last, ok, nil
}

// logical addresses a segment's WAL without its page headers, where records are
// contiguous; alignment is kept because every page header is a multiple of 8 bytes.
// It reads in place rather than copying the segment.
type logical struct {
	seg      []byte
	bs       int
	firstHdr int
	end      int // logical length of the valid pages
	remLen   int
}

func newLogical(seg []byte, bs int, pageAddr LSN) *logical {
	l := &logical{seg: seg, bs: bs, firstHdr: shortPageHeaderSize}
	if binary.LittleEndian.Uint16(seg[2:4])&xlpLongHeader != 0 {
		l.firstHdr = longPageHeaderSize
	}
	l.remLen = int(binary.LittleEndian.Uint32(seg[16:20]))
	magic := binary.LittleEndian.Uint16(seg[0:2])
	for off := 0; off < len(seg); off += bs {
		page := seg[off:min(off+bs, len(seg))]
		if off > 0 && (len(page) < shortPageHeaderSize || binary.LittleEndian.Uint16(page[0:2]) != magic ||
			LSN(binary.LittleEndian.Uint64(page[8:16])) != pageAddr+LSN(off)) {
			break // zeroed or recycled space: the end of valid WAL
		}
		hdr := l.firstHdr
		if off > 0 {
			hdr = shortPageHeaderSize
		}
		l.end += max(len(page)-hdr, 0)
	}
	return l
}

// phys maps a logical offset to its offset in the segment.
func (l *logical) phys(pos int) int {
	first := l.bs - l.firstHdr
	if pos < first {
		return l.firstHdr + pos
	}
	pos -= first
	per := l.bs - shortPageHeaderSize
	return l.bs*(1+pos/per) + shortPageHeaderSize + pos%per
}

func (l *logical) has(end int) bool { return end <= l.end }

// read copies len(dst) logical bytes from pos, across page headers.
func (l *logical) read(pos int, dst []byte) bool {
	if !l.has(pos + len(dst)) {
		return false
	}
	for n := 0; n < len(dst); {
		p := l.phys(pos + n)
		pageEnd := (p/l.bs + 1) * l.bs
		n += copy(dst[n:], l.seg[p:min(pageEnd, len(l.seg))])
	}
	return true
}

func align8(n int) int { return (n + 7) &^ 7 }

// xactTime returns the time of a commit or abort record: the first field of its
// main data, which is the last part of the record.
func xactTime(rec []byte) (time.Time, bool) {
	rmid, info := rec[17], rec[16]
	if rmid != rmXact {
		return time.Time{}, false
	}
	switch info & xactOpMask {
	case xactCommit, xactAbort, xactCommitPrepared, xactAbortPrepared:
	default:
		return time.Time{}, false
	}
	p := recordHeaderSize
	mainLen := -1
	for p < len(rec) && mainLen < 0 {
		switch rec[p] {
		case blockIDDataShort:
			if p+2 > len(rec) {
				return time.Time{}, false
			}
			mainLen = int(rec[p+1])
		case blockIDDataLong:
			if p+5 > len(rec) {
				return time.Time{}, false
			}
			mainLen = int(binary.LittleEndian.Uint32(rec[p+1 : p+5]))
		case blockIDOrigin:
			p += 3
		case blockIDToplevelXID:
			p += 5
		default:
			return time.Time{}, false // block references: not a plain commit record
		}
	}
	if mainLen < 8 || mainLen > len(rec)-recordHeaderSize {
		return time.Time{}, false
	}
	us := int64(binary.LittleEndian.Uint64(rec[len(rec)-mainLen:]))
	return pgEpoch.Add(time.Duration(us) * time.Microsecond), true
}

// WALEnd returns the position just past the last record that completes in a
// segment (one continued from the segment before counts), the way
// pg_last_wal_replay_lsn reports a replay that ended there; ok is false when no
// record completes in it (one record spans the whole segment).
func WALEnd(seg []byte) (end LSN, ok bool, err error) {
	h, err := ReadSegmentHeader(seg)
	if err != nil {
		return 0, false, err
	}
	l := newLogical(seg, int(h.BlockSize), h.PageAddr)
	last := -1
	if l.remLen > 0 {
		if !l.has(l.remLen) {
			return 0, false, nil
		}
		last = l.remLen
	}
	pos := align8(l.remLen)
	var hdr [recordHeaderSize]byte
	for l.read(pos, hdr[:]) {
		totLen := int(binary.LittleEndian.Uint32(hdr[0:4]))
		if totLen < recordHeaderSize || !l.has(pos+totLen) {
			break
		}
		last = pos + totLen
		pos += align8(totLen)
	}
	if last <= 0 {
		return 0, false, nil
	}
	// The byte after the record's last one: at a page's end that is the next page's
	// start, not the first byte after its header.
	return h.PageAddr + LSN(l.phys(last-1)+1), true, nil
}
