package store

import "fmt"

// ChainWalk judges the event log row by row, oldest first, against the
// chain state the backend records (the purge anchor and the head): the
// one verification every backend runs (Log.VerifyLog), so that the legal
// verdict and its wording do not depend on the database.
type ChainWalk struct {
	anchorID, headID int64
	headHash         []byte
	prevID           int64
	prevHash         []byte
}

// NewChainWalk starts a walk from the anchor (the last purged row, 0 and
// ZeroHash when none) towards the recorded head.
func NewChainWalk(anchorID int64, anchorHash []byte, headID int64, headHash []byte) *ChainWalk {
	return &ChainWalk{anchorID: anchorID, headID: headID, headHash: headHash, prevID: anchorID, prevHash: anchorHash}
}

// HashLookup returns the id of a row, other than except, whose hash is h;
// ok is false when there is none. The backend may have to end its row scan
// first; an error is the backend's own (the database), not a verdict.
type HashLookup func(h []byte, except int64) (id int64, ok bool, err error)

// Row checks the next row e, stored with prevHash and hash. It returns the
// first bad row id and why, or a lookup error with firstBad 0; nil when the
// row fits the chain.
func (w *ChainWalk) Row(e *Event, prevHash, hash []byte, lookup HashLookup) (firstBad int64, err error) {
	if e.ID != w.prevID+1 {
		if e.ID <= w.anchorID {
			return e.ID, fmt.Errorf("store: event log: row %d is at or before the purge anchor (row %d): the anchor was changed", e.ID, w.anchorID)
		}
		return e.ID, fmt.Errorf("store: event log: rows %d..%d removed (between row %d and row %d)", w.prevID+1, e.ID-1, w.prevID, e.ID)
	}
	if got := RowHash(prevHash, e); string(got) != string(hash) {
		return e.ID, fmt.Errorf("store: event log: row %d was changed: its contents do not match its hash", e.ID)
	}
	if string(prevHash) != string(w.prevHash) {
		j, ok, err := lookup(prevHash, w.prevID)
		switch {
		case err != nil:
			return 0, err
		case ok:
			return e.ID, fmt.Errorf("store: event log reordered: row %d was written after the event now at row %d, not after row %d", e.ID, j, w.prevID)
		case w.prevID == w.anchorID:
			return e.ID, fmt.Errorf("store: event log: row %d does not link to the purge anchor (row %d): the anchor was changed or rows were removed", e.ID, w.anchorID)
		default:
			return e.ID, fmt.Errorf("store: event log: row %d does not link to row %d: row %d was rewritten together with its hash, or replaced", e.ID, w.prevID, w.prevID)
		}
	}
	w.prevID, w.prevHash = e.ID, hash
	return 0, nil
}

// End checks, after the last row, that the log ends at the recorded head.
func (w *ChainWalk) End() (firstBad int64, err error) {
	switch {
	case w.prevID < w.headID:
		return w.prevID + 1, fmt.Errorf("store: event log truncated: rows %d..%d removed (last row %d, recorded head %d)", w.prevID+1, w.headID, w.prevID, w.headID)
	case w.prevID > w.headID:
		return w.headID + 1, fmt.Errorf("store: event log: rows %d..%d were added after the recorded head %d outside the store", w.headID+1, w.prevID, w.headID)
	case string(w.prevHash) != string(w.headHash):
		return w.prevID, fmt.Errorf("store: event log: row %d does not match the recorded head hash: it was rewritten", w.prevID)
	}
	return 0, nil
}
