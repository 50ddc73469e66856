package ca

import (
	"container/list"
	"crypto/tls"
)

// lru is a bounded least-recently-used map from name to leaf. Not safe for
// concurrent use; Minter guards it.
type lru struct {
	size  int
	order *list.List // front = most recently used; values are *lruEntry
	items map[string]*list.Element
}

type lruEntry struct {
	name string
	cert *tls.Certificate
}

func newLRU(size int) *lru {
	return &lru{size: size, order: list.New(), items: make(map[string]*list.Element)}
}

func (c *lru) get(name string) *tls.Certificate {
	el, ok := c.items[name]
	if !ok {
		return nil
	}
	c.order.MoveToFront(el)
	return el.Value.(*lruEntry).cert
}

// add stores cert under name, evicting the least recently used entry when full.
func (c *lru) add(name string, cert *tls.Certificate) {
	if el, ok := c.items[name]; ok {
		el.Value.(*lruEntry).cert = cert
		c.order.MoveToFront(el)
		return
	}
	c.items[name] = c.order.PushFront(&lruEntry{name: name, cert: cert})
	for c.order.Len() > c.size {
		oldest := c.order.Back()
		c.order.Remove(oldest)
		delete(c.items, oldest.Value.(*lruEntry).name)
	}
}

func (c *lru) remove(name string) {
	if el, ok := c.items[name]; ok {
		c.order.Remove(el)
		delete(c.items, name)
	}
}
