package wire

// NAK bodies are compressed loss lists (§4.3): a word with the top bit
// clear is one lost sequence number; a word with the top bit set starts an
// inclusive range whose last number is the next word.

const rangeBit = 0x80000000

// AppendLoss appends the loss-list encoding of the inclusive range
// first..last (a single word when first == last).
func AppendLoss(b []byte, first, last int32) []byte {
	if first == last {
		return be.AppendUint32(b, uint32(first)&0x7FFFFFFF)
	}
	b = be.AppendUint32(b, uint32(first)|rangeBit)
	return be.AppendUint32(b, uint32(last)&0x7FFFFFFF)
}

// LossReader iterates over a NAK body without allocating.
type LossReader struct {
	body []byte
}

// NewLossReader returns a reader over body.
func NewLossReader(body []byte) LossReader { return LossReader{body: body} }

// Next returns the next inclusive range. ok is false at the end of the
// list; err is ErrMalformed for a range start with no end word, or an end
// word that itself has the range bit set. A trailing partial word is
// ignored, as libudt does.
func (r *LossReader) Next() (first, last int32, ok bool, err error) {
	if len(r.body) < 4 {
		return 0, 0, false, nil
	}
	w := be.Uint32(r.body)
	r.body = r.body[4:]
	if w&rangeBit == 0 {
		return int32(w), int32(w), true, nil
	}
	if len(r.body) < 4 {
		r.body = nil
		return 0, 0, false, ErrMalformed
	}
	e := be.Uint32(r.body)
	r.body = r.body[4:]
	if e&rangeBit != 0 {
		r.body = nil
		return 0, 0, false, ErrMalformed
	}
	return int32(w &^ rangeBit), int32(e), true, nil
}
