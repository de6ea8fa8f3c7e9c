package dataplane

import (
	"bytes"
	"cmp"
	"slices"
	"strings"
)

// unknownContent is the content recorded for a chain of ours whose rules we
// do not know (found in the kernel, not written by this Dataplane): it never
// equals a wanted content, so the chain is rewritten or deleted.
const unknownContent = "\x00unknown"

// delta is what one iptables-restore changes: chains written (flushed and
// filled) and chains deleted.
type delta struct {
	write  []chainKey
	delete []chainKey
}

func (d delta) empty() bool { return len(d.write) == 0 && len(d.delete) == 0 }

// diffRules compares what is applied with what is wanted and returns the
// chains to write and to delete, sorted by table and name. With full, every
// wanted chain is written, changed or not.
func diffRules(applied, want ruleset, full bool) delta {
	var d delta
	for k, c := range want {
		if old, ok := applied[k]; full || !ok || old != c {
			d.write = append(d.write, k)
		}
	}
	for k := range applied {
		if _, ok := want[k]; !ok {
			d.delete = append(d.delete, k)
		}
	}
	slices.SortFunc(d.write, compareKeys)
	slices.SortFunc(d.delete, compareKeys)
	return d
}

// compareKeys orders nat before filter, then by name.
func compareKeys(a, b chainKey) int {
	return cmp.Or(-strings.Compare(a.table, b.table), strings.Compare(a.name, b.name))
}

// restoreInput is the iptables-restore --noflush input for d: per table,
// every chain written or deleted is declared (which, with --noflush, creates
// or flushes it), the written chains get their rules, the deleted ones are
// deleted. Nothing outside those chains is named.
func restoreInput(d delta, want ruleset) []byte {
	var b bytes.Buffer
	for _, table := range ourTables {
		start := b.Len()
		for _, k := range d.write {
			if k.table == table {
				b.WriteString(":" + k.name + " - [0:0]\n")
			}
		}
		for _, k := range d.delete {
			if k.table == table {
				b.WriteString(":" + k.name + " - [0:0]\n")
			}
		}
		if b.Len() == start {
			continue
		}
		for _, k := range d.write {
			if k.table == table {
				b.WriteString(want[k])
			}
		}
		for _, k := range d.delete {
			if k.table == table {
				b.WriteString("-X " + k.name + "\n")
			}
		}
		b.WriteString("COMMIT\n")
		// The header goes before the declarations.
		section := append([]byte("*"+table+"\n"), b.Bytes()[start:]...)
		b.Truncate(start)
		b.Write(section)
	}
	return b.Bytes()
}

// countRules is the number of rules in a chain content.
func countRules(content string) int {
	if content == unknownContent {
		return 0
	}
	return strings.Count(content, "\n")
}
