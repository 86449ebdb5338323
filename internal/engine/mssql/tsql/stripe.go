package tsql

import (
	"fmt"
)

// Azure block blob limits as BACKUP TO URL meets them.
const (
	// MaxStripes is the number of devices one BACKUP takes.
	MaxStripes = 64
	// URLMaxTransferSize and URLBlockSize let a block blob reach its largest size:
	// each MAXTRANSFERSIZE buffer is one block, and a blob holds 50,000 blocks.
	URLMaxTransferSize = 4 << 20
	URLBlockSize       = 64 << 10
	MaxBlocksPerBlob   = 50000
	// MaxBlobBytes is what one stripe can hold: 50,000 blocks of 4 MiB (about 195 GiB).
	MaxBlobBytes = int64(MaxBlocksPerBlob) * URLMaxTransferSize
	// StripeFill is the part of MaxBlobBytes a stripe is planned to fill: buffers are
	// not always full, and sizes are estimated before the backup runs.
	StripeFill = 0.8
)

// Layout is how a backup is spread over devices.
type Layout struct {
	Stripes         int
	MaxTransferSize int // 0: the server's default
	BlockSize       int // 0: the server's default
}

// URLLayout chooses the stripes of a BACKUP TO URL for a backup of about size bytes
// (before compression: the worst case), so that no blob passes its 50,000-block limit.
func URLLayout(size int64) (Layout, error) {
	if size < 0 {
		size = 0
	}
	per := int64(float64(MaxBlobBytes) * StripeFill)
	n := int((size + per - 1) / per)
	if n < 1 {
		n = 1
	}
	if n > MaxStripes {
		return Layout{}, fmt.Errorf("a backup of %d bytes needs %d blobs of at most %d bytes, more than the %d stripes BACKUP TO URL takes: use mode: stream", size, n, per, MaxStripes)
	}
	return Layout{Stripes: n, MaxTransferSize: URLMaxTransferSize, BlockSize: URLBlockSize}, nil
}

// DiskLayout is one file: hartvault splits it into volumes itself.
func DiskLayout() Layout { return Layout{Stripes: 1} }
