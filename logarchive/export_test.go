package logarchive

import "bytes"

// CheckLines runs, for the external tests, the content checks of Verify on
// an archive's uncompressed JSON lines (no signature, no gzip).
func CheckLines(lines []byte, day string, fn func(Row) error) (*Report, error) {
	rep := &Report{}
	err := checkLines(rep, bytes.NewReader(lines), day, fn)
	return rep, err
}
