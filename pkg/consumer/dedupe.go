package consumer

// idSet remembers recently applied event ids in two generations: when the
// current one is full it becomes the previous one, so memory stays bounded
// while any id seen in the last limit..2*limit events is recognised.
// Redeliveries come soon after the original (a retry, a re-read from the
// last committed offset), so a window suffices.
type idSet struct {
	limit      int
	cur, older map[string]struct{}
}

func newIDSet(limit int) *idSet {
	return &idSet{limit: limit, cur: map[string]struct{}{}, older: map[string]struct{}{}}
}

// add records id and reports whether it was new.
func (s *idSet) add(id string) bool {
	if _, ok := s.cur[id]; ok {
		return false
	}
	if _, ok := s.older[id]; ok {
		return false
	}
	if len(s.cur) >= s.limit {
		s.older, s.cur = s.cur, make(map[string]struct{}, s.limit)
	}
	s.cur[id] = struct{}{}
	return true
}
