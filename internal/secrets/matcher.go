package secrets

import (
	"bytes"
	"encoding/binary"
	"slices"
)

// matcher finds every spelling of every real value in one pass over a
// window, fast enough to run on every response body from every host.
//
// Each needle is at least minLen long, so any occurrence contains one of the
// 8-byte grams sampled every minLen-7 bytes; a sampled gram is looked up in a
// table of all 8-byte grams of all needles (a bitset first: most samples of
// ordinary data miss it), and only a hit is verified. For the bench's 50-byte
// value this reads one gram per 43 bytes of body.
//
// Line-broken encodings (MIME and PEM base64, GitHub's contents API, JSON
// strings holding "\n") split a spelling with separators. Around every
// separator that sits between two needle characters the window is also
// searched with separators removed; such a match covers the original bytes
// from its first to its last character.
type matcher struct {
	needles []needle
	minLen  int
	maxLen  int

	// Gram index (minLen >= gramLen): gram → postings[post[i]:post[i+1]].
	bits     []uint64 // bitset over gramHash(g) >> (64-bitsLog2)
	glen     int      // gram length: 16 bytes when every needle is long enough, else 8
	keys     []uint64 // open addressing: first 8 bytes of the gram,
	keys2    []uint64 // and the next 8 (16-byte grams)
	used     []bool
	postIdx  []int32 // per slot: start of its postings
	postLen  []int32
	postings []posting
	mask     uint64

	alphabet [256]bool    // bytes that occur in a needle without separators
	byFirst  [256][]int32 // needles by their first byte
	stripped []int        // needles without separator bytes, searched across line breaks
	sepFree  []bool       // per needle: it is in stripped
}

// posting says that a gram occurs in needle k at offset off.
type posting struct {
	k   int32
	off int32
}

// scratch is per-stream working space for the line-broken search.
type scratch struct {
	flat []byte
	pos  []int32
	ms   []match
}

// match is one occurrence: win[start:end] spells needle k.
type match struct {
	start, end int
	k          int
}

const (
	gramLen   = 8
	bitsLog2  = 16
	gramMul   = 0x9E3779B97F4A7C15
	gramMul2  = 0xC2B2AE3D27D4EB4F
	maxSpread = 2 // a line-broken spelling may span up to maxSpread × its length
	minRun    = 8 // needle characters around a separator before it is looked at
)

// isSeparator reports the single bytes that line-broken encodings insert.
func isSeparator(c byte) bool { return c == '\n' || c == '\r' || c == ' ' || c == '\t' }

// escapedSeparator reports the length of a JSON-escaped line break at b[i]
// ("\n", "\r", "\t"), or 0.
func escapedSeparator(b []byte, i int) int {
	if i+1 < len(b) && b[i] == '\\' && (b[i+1] == 'n' || b[i+1] == 'r' || b[i+1] == 't') {
		return 2
	}
	return 0
}

func newMatcher(needles []needle) *matcher {
	m := &matcher{needles: needles, sepFree: make([]bool, len(needles))}
	if len(needles) == 0 {
		return m
	}
	m.minLen = len(needles[0].text)
	for k, n := range needles {
		m.byFirst[n.bytes[0]] = append(m.byFirst[n.bytes[0]], int32(k))
		m.minLen = min(m.minLen, len(n.text))
		m.maxLen = max(m.maxLen, len(n.text))
		if !bytes.ContainsFunc(n.bytes, func(r rune) bool { return r < 256 && (isSeparator(byte(r)) || r == '\\') }) {
			m.stripped = append(m.stripped, k)
			m.sepFree[k] = true
			for _, c := range n.bytes {
				m.alphabet[c] = true
			}
		}
	}
	if m.minLen < gramLen {
		return m // short values: searched needle by needle
	}
	// Longer grams hit less often in data that shares short runs with a
	// value (the bench's body is made of a run its secret contains).
	m.glen = gramLen
	if m.minLen >= 3*gramLen {
		m.glen = 2 * gramLen
	}
	byGram := map[[2]uint64][]posting{}
	for k, n := range needles {
		for off := 0; off+m.glen <= len(n.bytes); off++ {
			g := m.gram(n.bytes[off:])
			byGram[g] = append(byGram[g], posting{k: int32(k), off: int32(off)})
		}
	}
	size := 1
	for size < 2*len(byGram) {
		size <<= 1
	}
	m.mask = uint64(size - 1)
	m.bits = make([]uint64, 1<<(bitsLog2-6))
	m.keys = make([]uint64, size)
	m.keys2 = make([]uint64, size)
	m.used = make([]bool, size)
	m.postIdx = make([]int32, size)
	m.postLen = make([]int32, size)
	for g, ps := range byGram {
		h := gramHash(g)
		b := h >> (64 - bitsLog2)
		m.bits[b>>6] |= 1 << (b & 63)
		i := h & m.mask
		for m.used[i] {
			i = (i + 1) & m.mask
		}
		m.used[i], m.keys[i], m.keys2[i] = true, g[0], g[1]
		m.postIdx[i], m.postLen[i] = int32(len(m.postings)), int32(len(ps))
		m.postings = append(m.postings, ps...)
	}
	return m
}

// nextCandidate returns the first sample p, p+step, … below end whose gram
// may be a needle's (its bit is set), or -1. It runs on every sample, so it
// is a small leaf function the compiler keeps in registers.
func nextCandidate(bits *[1 << (bitsLog2 - 6)]uint64, win []byte, p, end, step int, wide bool) int {
	for ; p < end; p += step {
		g0 := binary.LittleEndian.Uint64(win[p:])
		var g1 uint64
		if wide {
			g1 = binary.LittleEndian.Uint64(win[p+gramLen:])
		}
		h := (g0 ^ (g1 * gramMul2)) * gramMul
		if b := h >> (64 - bitsLog2); bits[b>>6]&(1<<(b&63)) != 0 {
			return p
		}
	}
	return -1
}

// gram reads the gram at the start of b (len(b) >= m.glen).
func (m *matcher) gram(b []byte) [2]uint64 {
	g := [2]uint64{binary.LittleEndian.Uint64(b)}
	if m.glen > gramLen {
		g[1] = binary.LittleEndian.Uint64(b[gramLen:])
	}
	return g
}

func gramHash(g [2]uint64) uint64 { return (g[0] ^ (g[1] * gramMul2)) * gramMul }

// hold is how far past a decision point a match may reach: the stream keeps
// this much undecided lookahead.
func (m *matcher) hold() int { return maxSpread * m.maxLen }

// mustHold returns how many bytes at the end of undecided could begin a
// spelling that later input might complete (contiguous, or broken by
// separators): those must wait; everything before them can be decided now.
// Only the last hold() bytes can matter: a spelling starting earlier would
// lie inside the window. The answer errs towards holding.
func (m *matcher) mustHold(undecided []byte) int {
	from := max(0, len(undecided)-m.hold())
	for p := from; p < len(undecided); p++ {
		if ks := m.byFirst[undecided[p]]; ks != nil && m.couldStart(ks, undecided[p:]) {
			return len(undecided) - p
		}
	}
	return 0
}

// couldStart reports whether rest is a proper prefix of one of the needles ks, or of
// a separator-free needle once separators are skipped.
func (m *matcher) couldStart(ks []int32, rest []byte) bool {
	for _, k := range ks {
		n := m.needles[k]
		if len(rest) < len(n.bytes) && bytes.HasPrefix(n.bytes, rest) {
			return true
		}
		if m.sepFree[k] && brokenPrefix(n.bytes, rest) {
			return true
		}
	}
	return false
}

// brokenPrefix reports whether rest, with separators (raw or JSON-escaped)
// skipped, spells a proper prefix of b, or all of b with separators in it:
// whether such a spelling is searched depends on a line break that may yet
// arrive within reach, so it is not decided early either. A backslash at
// the very end may start an escape: that counts as a prefix.
func brokenPrefix(b, rest []byte) bool {
	j, broken := 0, false
	for i := 0; i < len(rest); {
		if j == len(b) {
			return broken
		}
		c := rest[i]
		if isSeparator(c) {
			i, broken = i+1, true
			continue
		}
		if c == '\\' {
			if i+1 == len(rest) {
				return true
			}
			if n := escapedSeparator(rest, i); n > 0 {
				i, broken = i+n, true
				continue
			}
		}
		if c != b[j] {
			return false
		}
		i++
		j++
	}
	return j < len(b) || broken
}

// find appends to ms every occurrence starting in win[from:limit] that lies
// inside win, in no particular order.
func (m *matcher) find(ms []match, win []byte, from, limit int, sc *scratch) []match {
	if len(m.needles) == 0 || from >= limit {
		return ms
	}
	ms = m.findContiguous(ms, win, from, limit, false)
	return m.findLineBroken(ms, win, from, limit, sc)
}

func (m *matcher) findContiguous(ms []match, win []byte, from, limit int, strippedOnly bool) []match {
	if m.minLen < gramLen {
		for k, n := range m.needles {
			if strippedOnly && !m.sepFree[k] {
				continue
			}
			for i := from; i < limit; {
				j := bytes.Index(win[i:], n.bytes)
				if j < 0 || i+j >= limit {
					break
				}
				ms = append(ms, match{start: i + j, end: i + j + len(n.bytes), k: k})
				i += j + 1
			}
		}
		return ms
	}
	step := m.minLen - m.glen + 1
	// An occurrence starting at x in [from, limit) contains the sample at
	// the first p >= x, since p <= x+step-1 and p+glen <= x+minLen.
	end := min(limit+step-1, len(win)-m.glen+1)
	bits := (*[1 << (bitsLog2 - 6)]uint64)(m.bits)
	wide := m.glen > gramLen
	for p := from; ; p += step {
		if p = nextCandidate(bits, win, p, end, step, wide); p < 0 {
			break
		}
		g := m.gram(win[p:])
		h := gramHash(g)
		for i := h & m.mask; m.used[i]; i = (i + 1) & m.mask {
			if m.keys[i] != g[0] || m.keys2[i] != g[1] {
				continue
			}
			for _, ps := range m.postings[m.postIdx[i] : m.postIdx[i]+m.postLen[i]] {
				if strippedOnly && !m.sepFree[ps.k] {
					continue
				}
				n := m.needles[ps.k].bytes
				x := p - int(ps.off)
				if x < from || x >= limit || x+len(n) > len(win) {
					continue
				}
				// Cheap checks of both ends before the whole comparison.
				if binary.LittleEndian.Uint64(win[x:]) != binary.LittleEndian.Uint64(n) ||
					binary.LittleEndian.Uint64(win[x+len(n)-gramLen:]) != binary.LittleEndian.Uint64(n[len(n)-gramLen:]) ||
					!bytes.Equal(win[x:x+len(n)], n) {
					continue
				}
				ms = append(ms, match{start: x, end: x + len(n), k: int(ps.k)})
			}
			break
		}
	}
	return ms
}

// findLineBroken searches, with separators removed, the regions around
// separators that split a run of needle characters.
func (m *matcher) findLineBroken(ms []match, win []byte, from, limit int, sc *scratch) []match {
	if len(m.stripped) == 0 {
		return ms
	}
	reach := m.hold()
	regStart, regEnd := -1, -1
	flush := func() {
		if regStart >= 0 {
			ms = m.searchStripped(ms, win, regStart, regEnd, from, limit, sc)
		}
	}
	scanEnd := min(len(win), limit+reach)
	// A line break up to reach before from (in the history a stream keeps)
	// may open a region reaching past from.
	scanFrom := max(0, from-reach)
	// Line breaks open a search; spaces and tabs (indentation) are only
	// skipped inside one, so ordinary text is not searched twice.
	seps := [...]byte{'\n', '\r', '\\'}
	var next [len(seps)]int // where seps[c] next occurs at or after i (scanEnd: nowhere)
	for c := range next {
		next[c] = -1
	}
	for i := scanFrom; i < scanEnd; i++ {
		j := scanEnd
		for c, sep := range seps {
			if next[c] < i {
				next[c] = scanEnd
				if k := bytes.IndexByte(win[i:scanEnd], sep); k >= 0 {
					next[c] = i + k
				}
			}
			j = min(j, next[c])
		}
		if j >= scanEnd {
			break
		}
		i = j
		// A run of separators is looked at once, whatever its length (a
		// body of newlines must not cost a walk per newline).
		end := separatorRunEnd(win, i, scanEnd)
		if end == i {
			continue // a backslash that escapes something else
		}
		if m.splitsRun(win, i, end, reach) {
			lo, hi := max(from, i-reach), min(len(win), end+reach)
			if lo <= regEnd {
				regEnd = max(regEnd, hi)
			} else {
				flush()
				regStart, regEnd = lo, hi
			}
		}
		i = end - 1
	}
	flush()
	return ms
}

// separatorRunEnd returns where the run of separators (raw or JSON-escaped)
// that a line break at win[i] opens ends, or i when win[i] opens none.
func separatorRunEnd(win []byte, i, limit int) int {
	if win[i] != '\n' && win[i] != '\r' && escapedSeparator(win, i) == 0 {
		return i
	}
	for i < limit {
		if isSeparator(win[i]) {
			i++
		} else if n := escapedSeparator(win, i); n > 0 {
			i += n
		} else {
			break
		}
	}
	return i
}

// splitsRun reports whether the separators win[i:end] may split a spelling:
// needle characters on both sides, at least minRun of them in all (counted
// across further separators, at most reach bytes away). Random binary rarely
// passes; text often does.
func (m *matcher) splitsRun(win []byte, i, end, reach int) bool {
	before := 0
	for j := i - 1; j >= max(0, i-reach) && before < minRun; j-- {
		switch c := win[j]; {
		case isSeparator(c):
		case j > 0 && win[j-1] == '\\' && (c == 'n' || c == 'r' || c == 't'):
			j--
		case m.alphabet[c]:
			before++
		default:
			j = -1
		}
	}
	after := 0
	for j := end; j < min(len(win), end+reach) && after < minRun; {
		if isSeparator(win[j]) {
			j++
		} else if n := escapedSeparator(win, j); n > 0 {
			j += n
		} else if m.alphabet[win[j]] {
			after++
			j++
		} else {
			break
		}
	}
	return before > 0 && after > 0 && before+after >= minRun
}

// searchStripped removes separators from win[lo:hi], searches the needles
// that have none, and maps what it finds back to win.
func (m *matcher) searchStripped(ms []match, win []byte, lo, hi, from, limit int, sc *scratch) []match {
	flat, pos := sc.flat[:0], sc.pos[:0]
	for i := lo; i < hi; {
		if isSeparator(win[i]) {
			i++
			continue
		}
		if n := escapedSeparator(win, i); n > 0 {
			i += n
			continue
		}
		flat = append(flat, win[i])
		pos = append(pos, int32(i))
		i++
	}
	sc.flat, sc.pos = flat, pos
	found := m.findContiguous(sc.ms[:0], flat, 0, len(flat), true)
	sc.ms = found
	for _, f := range found {
		s, e := int(pos[f.start]), int(pos[f.end-1])+1
		if e-s > f.end-f.start && s >= from && s < limit && e-s <= maxSpread*(f.end-f.start) {
			ms = append(ms, match{start: s, end: e, k: f.k})
		}
	}
	return ms
}

// leftmostLongest orders ms so that a left-to-right walk that skips
// overlapping matches takes, at each point, the earliest and then the longest.
func leftmostLongest(ms []match) {
	slices.SortFunc(ms, func(a, b match) int {
		if a.start != b.start {
			return a.start - b.start
		}
		return b.end - a.end
	})
}
