// Package printer is the one place where egwct's commands turn their
// results into output: the -o formats of kubectl (table, wide, json, yaml,
// name, jsonpath=…, go-template=…), --no-headers, the borderless tables,
// and the framing of every JSON document (a top-level schemaVersion, and
// for long listings a list object streamed one item at a time).
//
// A command declares the formats it has in a Spec, registers its flags
// with Flags.Register, gets a Printer from Flags.Printer (a bad -o value
// or template is a *UsageError) and prints a View or a Stream.
package printer
