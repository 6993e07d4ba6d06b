package validate

import "encoding/json"

// Severity orders findings: an Error fails validation, a Warning fails it
// with --strict, Info never does.
type Severity uint8

// The severities, least severe first.
const (
	Info Severity = iota
	Warning
	Error
)

func (s Severity) String() string {
	switch s {
	case Error:
		return "error"
	case Warning:
		return "warning"
	}
	return "info"
}

// MarshalJSON writes the severity as its name.
func (s Severity) MarshalJSON() ([]byte, error) { return json.Marshal(s.String()) }

// Rule is one check. Its ID is stable: CI configurations and the JSON
// output refer to it.
type Rule struct {
	ID       string
	Severity Severity
	Summary  string
}

// DocsURL is the reference of the timeout text and the rules, which
// Rule.HelpURL links into.
const DocsURL = "https://github.com/egwct/egwct/blob/main/docs/timeouts.md"

// Anchor is the rule's anchor in docs/timeouts.md.
func (r Rule) Anchor() string { return "rule-" + r.ID }

// HelpURL is the rule's entry in the reference (DocsURL).
func (r Rule) HelpURL() string { return DocsURL + "#" + r.Anchor() }

// RuleByID returns the rule with the id.
func RuleByID(id string) (Rule, bool) {
	for _, r := range Rules {
		if r.ID == id {
			return r, true
		}
	}
	return Rule{}, false
}

// The rules, in the order the reference lists them.
var (
	RuleYAMLSyntax        = Rule{"yaml-syntax", Error, "the file is not valid YAML or JSON"}
	RuleLineSyntax        = Rule{"line-syntax", Error, "a line of the timeout text is not \"key: value\""}
	RuleNotText           = Rule{"not-text", Error, "connection-timeouts is not a text (e.g. a YAML mapping where a \"|\" block was meant)"}
	RuleTextTooLarge      = Rule{"text-too-large", Error, "the timeout text is larger than 64 KiB"}
	RuleUnknownKey        = Rule{"unknown-key", Error, "the key is not a parameter of the Cilium version (with a suggestion for near misses and snake/kebab/flag spellings)"}
	RuleDuplicateKey      = Rule{"duplicate-key", Error, "the key is set twice in one text"}
	RuleServiceTimer      = Rule{"service-timer", Error, "a service timer: it times load-balancer entries, never egress-gateway flows"}
	RuleBareNumber        = Rule{"bare-number", Error, "a number without a unit (Cilium's own parser would read it as nanoseconds)"}
	RuleBadDuration       = Rule{"bad-duration", Error, "the value is not a duration"}
	RuleNonPositive       = Rule{"non-positive", Error, "the value is zero or negative"}
	RuleAboveNode         = Rule{"above-node-timeout", Error, "the value is longer than the node's timeout for the state: egwct can only shorten"}
	RuleSourceConflict    = Rule{"source-conflict", Error, "spec.connection-timeouts and the egwct.io/connection-timeouts annotation disagree"}
	RuleFileTooLarge      = Rule{"file-too-large", Error, "the input file is larger than egwct reads"}
	RulePolicySpec        = Rule{"policy-spec", Error, "apply and agent cannot read the policy's selectors or destination CIDRs"}
	RuleBelowPrecision    = Rule{"below-precision", Warning, "the value is not a whole number of seconds, the sweep precision: say what it acts as"}
	RuleJiffyRounding     = Rule{"jiffy-rounding", Warning, "on a jiffies node the value rounds by a second or more: say what it acts as"}
	RuleSynAboveEst       = Rule{"syn-above-established", Warning, "the SYN timeout is longer than the established-TCP timeout"}
	RuleBelowRFC5382      = Rule{"below-rfc5382", Warning, "the established-TCP timeout is below RFC 5382's 2h4m: idle connections without keepalives are cut"}
	RuleUnverifiedVersion = Rule{"unverified-version", Warning, "the profile's facts may not hold for the Cilium version: a development build, a minor still in development, or a release on which hack/verify-profiles found a difference"}
	RuleAPIVersion        = Rule{"api-version", Warning, "a CiliumEgressGatewayPolicy whose apiVersion is not cilium.io/v2"}
	RuleNodeConfig        = Rule{"node-config", Warning, "a node setting that probably does not mean what was meant"}
	RuleProfile           = Rule{"profile", Info, "which profile was used, and why"}
	RuleNodeSettings      = Rule{"node-settings", Info, "where the node's timeouts and clock were taken from"}
	RuleVersionQuirk      = Rule{"version-quirk", Info, "a known behaviour of the Cilium release that matters to per-policy timeouts"}
	RuleNoEffect          = Rule{"no-effect", Info, "the value equals the node's timeout, so it changes nothing"}
	RuleNewerPatch        = Rule{"newer-patch", Info, "a patch release newer than those the profile was verified against, of a minor whose verified releases all matched"}
)

// Rules lists every rule.
var Rules = []Rule{
	RuleYAMLSyntax, RuleLineSyntax, RuleNotText, RuleTextTooLarge, RuleUnknownKey, RuleDuplicateKey,
	RuleServiceTimer, RuleBareNumber, RuleBadDuration, RuleNonPositive, RuleAboveNode, RuleSourceConflict,
	RuleFileTooLarge, RulePolicySpec, RuleBelowPrecision, RuleJiffyRounding, RuleSynAboveEst, RuleBelowRFC5382,
	RuleUnverifiedVersion, RuleAPIVersion, RuleNodeConfig, RuleProfile, RuleNodeSettings, RuleVersionQuirk,
	RuleNoEffect, RuleNewerPatch,
}
