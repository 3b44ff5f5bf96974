package v1

import (
	"encoding/json"
	"fmt"
	"time"
)

// Never is the value of a NillableDuration that disables the behaviour it times.
const Never = "Never"

// NillableDuration is a duration that may also be "Never". It keeps the text it was
// read from, so an object read and written back is unchanged. The zero value is
// "unset" (fields use omitzero, so the API server applies the default); write
// "Never" with MustParseNillableDuration(Never).
// +kubebuilder:validation:Type=string
// +kubebuilder:validation:Pattern=`^(([0-9]+(s|m|h))+|Never)$`
type NillableDuration struct {
	// Duration is nil for "Never".
	Duration *time.Duration `json:"-"`
	raw      string
}

// MustParseNillableDuration parses s and panics on error; for defaults and tests.
func MustParseNillableDuration(s string) NillableDuration {
	var d NillableDuration
	if err := d.UnmarshalJSON([]byte(fmt.Sprintf("%q", s))); err != nil {
		panic(err)
	}
	return d
}

// UnmarshalJSON reads a Go duration string or "Never".
func (d *NillableDuration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration must be a string such as \"720h\" or \"Never\": %w", err)
	}
	if s == Never {
		*d = NillableDuration{raw: s}
		return nil
	}
	parsed, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration %q: %w (use hours, minutes or seconds, such as \"720h\", or \"Never\")", s, err)
	}
	*d = NillableDuration{Duration: &parsed, raw: s}
	return nil
}

// MarshalJSON writes the text the value was read from, or a canonical form.
func (d NillableDuration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.String())
}

// String returns "Never" or the duration.
func (d NillableDuration) String() string {
	if d.raw != "" {
		return d.raw
	}
	if d.Duration == nil {
		return Never
	}
	return d.Duration.String()
}

// IsZero reports whether the value is unset, for the omitzero JSON option.
func (d NillableDuration) IsZero() bool { return d.Duration == nil && d.raw == "" }

// IsNever reports whether the duration is "Never".
func (d NillableDuration) IsNever() bool { return d.Duration == nil }
