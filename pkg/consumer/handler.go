package consumer

// Handler is told about changes to a Store's objects, like client-go's
// ResourceEventHandler. Calls come one at a time, in the order the store
// applied the events, after the store changed (Get already answers with the
// new state), and may call the Store. A reader acknowledges an event only
// after every handler returned.
type Handler interface {
	// OnAdd: an object the store did not hold. isInInitialRound is true when
	// it came as a snapshot of a replay round (the object existed before);
	// false for a live create, or a change of an object first seen now.
	OnAdd(obj *Object, isInInitialRound bool)
	// OnUpdate: a new state of a held object (same uid).
	OnUpdate(oldObj, newObj *Object)
	// OnDelete: an object is gone: a DELETED (obj carries the final state),
	// or a replay round that no longer mentioned it (obj.FinalStateUnknown).
	// A DELETED of an object the store did not hold (it started reading
	// after the object's creation) is passed on too, so a handler that
	// writes elsewhere can remove its copy.
	OnDelete(obj *Object)
}

// HandlerFuncs adapts functions to Handler; nil functions are skipped.
type HandlerFuncs struct {
	AddFunc    func(obj *Object, isInInitialRound bool)
	UpdateFunc func(oldObj, newObj *Object)
	DeleteFunc func(obj *Object)
}

// OnAdd implements Handler.
func (h HandlerFuncs) OnAdd(obj *Object, initial bool) {
	if h.AddFunc != nil {
		h.AddFunc(obj, initial)
	}
}

// OnUpdate implements Handler.
func (h HandlerFuncs) OnUpdate(oldObj, newObj *Object) {
	if h.UpdateFunc != nil {
		h.UpdateFunc(oldObj, newObj)
	}
}

// OnDelete implements Handler.
func (h HandlerFuncs) OnDelete(obj *Object) {
	if h.DeleteFunc != nil {
		h.DeleteFunc(obj)
	}
}
