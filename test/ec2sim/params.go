package ec2sim

import (
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// params is an EC2 query request's parameters as a tree: "A.1.B=x" becomes
// A -> list item 1 -> B = x.
type params struct {
	value    string
	children map[string]*params
}

func parseParams(values url.Values) *params {
	root := &params{children: map[string]*params{}}
	for key, vs := range values {
		if len(vs) == 0 {
			continue
		}
		node := root
		for _, part := range strings.Split(key, ".") {
			child, ok := node.children[part]
			if !ok {
				child = &params{children: map[string]*params{}}
				node.children[part] = child
			}
			node = child
		}
		node.value = vs[0]
	}
	return root
}

// get returns the value at a dotted path, "" when absent.
func (p *params) get(path string) string {
	node := p
	for _, part := range strings.Split(path, ".") {
		if node == nil {
			return ""
		}
		node = node.children[part]
	}
	if node == nil {
		return ""
	}
	return node.value
}

// sub returns the subtree at a dotted path, or an empty tree.
func (p *params) sub(path string) *params {
	node := p
	for _, part := range strings.Split(path, ".") {
		next := node.children[part]
		if next == nil {
			return &params{children: map[string]*params{}}
		}
		node = next
	}
	return node
}

// list returns the numbered items under name, in order: Name.1, Name.2, ...
func (p *params) list(name string) []*params {
	node := p.sub(name)
	type item struct {
		i int
		p *params
	}
	var items []item
	for k, v := range node.children {
		if i, err := strconv.Atoi(k); err == nil {
			items = append(items, item{i, v})
		}
	}
	sort.Slice(items, func(a, b int) bool { return items[a].i < items[b].i })
	out := make([]*params, len(items))
	for i, it := range items {
		out[i] = it.p
	}
	return out
}

// strings returns the values of a list of scalars: Name.1=a, Name.2=b.
func (p *params) strings(name string) []string {
	var out []string
	for _, item := range p.list(name) {
		out = append(out, item.value)
	}
	return out
}

// filter is one Filter.N: a name and the values any of which may match.
type filter struct {
	name   string
	values []string
}

// filterSet is a request's filters. As on EC2, filters are AND-ed, also when
// two share a name, and the values of one filter are OR-ed.
type filterSet []filter

// filters reads Filter.N.Name and Filter.N.Value.M, and rejects, as EC2 does,
// a filter name the action does not know. Tag filters (tag:K, tag-key) are
// allowed when tagged is set.
func (p *params) filters(tagged bool, known ...string) (filterSet, *apiError) {
	var out filterSet
	for _, f := range p.list("Filter") {
		name := f.get("Name")
		if !contains(known, name) && !(tagged && (strings.HasPrefix(name, "tag:") || name == "tag-key")) {
			return nil, invalidParameter("The filter '%s' is invalid", name)
		}
		out = append(out, filter{name: name, values: f.strings("Value")})
	}
	return out, nil
}

// match reports whether v satisfies every filter of that name.
func (fs filterSet) match(name, v string) bool {
	for _, f := range fs {
		if f.name == name && !anyMatch(f.values, v) {
			return false
		}
	}
	return true
}

// tags reads TagSpecification.N for one resource type.
func (p *params) tags(resourceType string) map[string]string {
	return p.tagsIn("TagSpecification", resourceType)
}

// tagsIn reads the tag specifications of the list an action names (most
// say TagSpecification.N; CreateCapacityReservation TagSpecifications.N).
func (p *params) tagsIn(list, resourceType string) map[string]string {
	out := map[string]string{}
	for _, spec := range p.list(list) {
		if spec.get("ResourceType") != resourceType {
			continue
		}
		for _, t := range spec.list("Tag") {
			out[t.get("Key")] = t.get("Value")
		}
	}
	return out
}

// taggable refuses, as EC2 does, a TagSpecification whose resource type the
// operation does not create.
func taggable(p *params, allowed ...string) *apiError {
	return taggableIn(p, "TagSpecification", allowed...)
}

// taggableIn is taggable for the tag specifications of the list an action names.
func taggableIn(p *params, list string, allowed ...string) *apiError {
	for _, spec := range p.list(list) {
		if rt := spec.get("ResourceType"); !contains(allowed, rt) {
			return invalidParameter("'%s' is not a valid taggable resource type for this operation.", rt)
		}
	}
	return nil
}
