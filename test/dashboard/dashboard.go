// Package dashboard checks Grafana dashboards against a controller's real
// metrics: it scrapes a metrics endpoint into a Prometheus TSDB, as a
// Prometheus server would, and evaluates every panel query of a dashboard
// with Prometheus's own PromQL engine, its template variables filled in as
// Grafana fills them. A panel with no data is a problem to report.
package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"regexp"
	"sort"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/value"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/tsdb"
)

// Dashboard is what a check needs of a Grafana dashboard.
type Dashboard struct {
	Title  string
	Panels []Panel
	Vars   []Var
}

// Panel is one panel and its queries.
type Panel struct {
	Title string
	Exprs []string
	// Legends are the queries' legend formats, as {{label}} templates.
	Legends []string
}

// Var is a template variable.
type Var struct {
	Name string
	// Type is Grafana's: query, custom, datasource, ...
	Type string
	// Query is a label_values(...) call for query variables, the comma
	// separated options for custom ones.
	Query string
	// All is true when the dashboard may select every value at once, so a
	// query receives them as one regular expression.
	All bool
}

type grafanaPanel struct {
	Title   string `json:"title"`
	Targets []struct {
		Expr         string `json:"expr"`
		LegendFormat string `json:"legendFormat"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

type grafanaVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Query      json.RawMessage `json:"query"`
	IncludeAll bool            `json:"includeAll"`
	Multi      bool            `json:"multi"`
}

// Load reads a dashboard's JSON model.
func Load(path string) (*Dashboard, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var raw struct {
		Title      string         `json:"title"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []grafanaVar `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	d := &Dashboard{Title: raw.Title}
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			walk(p.Panels)
			panel := Panel{Title: p.Title}
			for _, t := range p.Targets {
				if strings.TrimSpace(t.Expr) != "" {
					panel.Exprs = append(panel.Exprs, t.Expr)
					panel.Legends = append(panel.Legends, t.LegendFormat)
				}
			}
			if len(panel.Exprs) > 0 {
				d.Panels = append(d.Panels, panel)
			}
		}
	}
	walk(raw.Panels)
	for _, v := range raw.Templating.List {
		q := ""
		var obj struct {
			Query string `json:"query"`
		}
		if json.Unmarshal(v.Query, &q) != nil && json.Unmarshal(v.Query, &obj) == nil {
			q = obj.Query
		}
		d.Vars = append(d.Vars, Var{Name: v.Name, Type: v.Type, Query: q, All: v.IncludeAll || v.Multi})
	}
	return d, nil
}

// Store holds scraped samples in a Prometheus TSDB.
type Store struct {
	db     *tsdb.DB
	engine *promql.Engine
	client *http.Client
	// seen are the series of each target's last scrape: one gone from the
	// next is marked stale, as Prometheus does, so a deleted node stops
	// counting at once instead of for the 5-minute lookback.
	seen map[string]map[string]labels.Labels
}

// NewStore opens an empty TSDB in dir.
func NewStore(dir string) (*Store, error) {
	db, err := tsdb.Open(dir, nil, nil, tsdb.DefaultOptions(), nil)
	if err != nil {
		return nil, err
	}
	engine := promql.NewEngine(promql.EngineOpts{MaxSamples: 50_000_000, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
	return &Store{db: db, engine: engine, client: &http.Client{Timeout: 10 * time.Second}, seen: map[string]map[string]labels.Labels{}}, nil
}

// Close closes the TSDB.
func (s *Store) Close() error { return s.db.Close() }

// Scrape reads url's text exposition once and stores every sample at now,
// with target's labels added (job and instance, as a scrape config would).
func (s *Store) Scrape(ctx context.Context, url string, target map[string]string, now time.Time) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("scraping %s: %s", url, resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return fmt.Errorf("scraping %s: %w", url, err)
	}
	app := s.db.Appender(ctx)
	ts := now.UnixMilli()
	seen := map[string]labels.Labels{}
	for name, f := range families {
		for _, m := range f.Metric {
			for _, smp := range samples(name, f.GetType(), m) {
				lbls := map[string]string{}
				for k, v := range target {
					lbls[k] = v
				}
				for _, l := range m.Label {
					lbls[l.GetName()] = l.GetValue()
				}
				for k, v := range smp.extra {
					lbls[k] = v
				}
				lbls[model.MetricNameLabel] = smp.name
				series := labels.FromMap(lbls)
				seen[series.String()] = series
				if _, err := app.Append(0, series, ts, smp.value); err != nil {
					_ = app.Rollback()
					return fmt.Errorf("storing %s: %w", smp.name, err)
				}
			}
		}
	}
	targetKey := labels.FromMap(target).String()
	for key, series := range s.seen[targetKey] {
		if _, ok := seen[key]; !ok {
			if _, err := app.Append(0, series, ts, math.Float64frombits(value.StaleNaN)); err != nil {
				_ = app.Rollback()
				return err
			}
		}
	}
	s.seen[targetKey] = seen
	return app.Commit()
}

type sample struct {
	name  string
	extra map[string]string
	value float64
}

// samples flattens one metric into the series Prometheus stores for it.
func samples(name string, typ dto.MetricType, m *dto.Metric) []sample {
	switch typ {
	case dto.MetricType_COUNTER:
		return []sample{{name: name, value: m.GetCounter().GetValue()}}
	case dto.MetricType_GAUGE:
		return []sample{{name: name, value: m.GetGauge().GetValue()}}
	case dto.MetricType_SUMMARY:
		out := []sample{{name: name + "_sum", value: m.GetSummary().GetSampleSum()},
			{name: name + "_count", value: float64(m.GetSummary().GetSampleCount())}}
		for _, q := range m.GetSummary().GetQuantile() {
			out = append(out, sample{name: name, extra: map[string]string{"quantile": model.FloatString(q.GetQuantile()).String()}, value: q.GetValue()})
		}
		return out
	case dto.MetricType_HISTOGRAM:
		h := m.GetHistogram()
		out := []sample{{name: name + "_sum", value: h.GetSampleSum()}, {name: name + "_count", value: float64(h.GetSampleCount())},
			{name: name + "_bucket", extra: map[string]string{"le": "+Inf"}, value: float64(h.GetSampleCount())}}
		for _, b := range h.GetBucket() {
			out = append(out, sample{name: name + "_bucket", extra: map[string]string{"le": model.FloatString(b.GetUpperBound()).String()},
				value: float64(b.GetCumulativeCount())})
		}
		return out
	default:
		return []sample{{name: name, value: m.GetUntyped().GetValue()}}
	}
}

// Window is the time range and step panels are evaluated over, as a
// dashboard's time picker sets it.
type Window struct {
	Start, End time.Time
	Step       time.Duration
	// RateInterval replaces $__rate_interval.
	RateInterval time.Duration
}

// Problem is a panel, or one of its queries, that shows nothing.
type Problem struct {
	Dashboard, Panel, Query, Why string
}

func (p Problem) String() string {
	if p.Query == "" {
		return fmt.Sprintf("%s / %q: %s", p.Dashboard, p.Panel, p.Why)
	}
	return fmt.Sprintf("%s / %q: %s\n    %s", p.Dashboard, p.Panel, p.Why, p.Query)
}

// Query evaluates expr over the window and returns its series.
func (s *Store) Query(ctx context.Context, expr string, w Window) (promql.Matrix, error) {
	q, err := s.engine.NewRangeQuery(ctx, s.db, nil, expr, w.Start, w.End, w.Step)
	if err != nil {
		return nil, err
	}
	defer q.Close()
	res := q.Exec(ctx)
	if res.Err != nil {
		return nil, res.Err
	}
	m, err := res.Matrix()
	if err != nil {
		return nil, err
	}
	// Closing the query hands its points back to the engine's pools, where
	// the next query overwrites them: keep a copy.
	out := make(promql.Matrix, len(m))
	for i, s := range m {
		out[i] = promql.Series{Metric: s.Metric, Floats: append([]promql.FPoint(nil), s.Floats...)}
	}
	return out, nil
}

var legendLabel = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

var labelValues = regexp.MustCompile(`(?s)^\s*label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

// values resolves a variable's options: a label_values query's label values
// over the window, or a custom variable's list.
func (s *Store) values(ctx context.Context, v Var, w Window) ([]string, error) {
	switch v.Type {
	case "custom":
		var out []string
		for _, o := range strings.Split(v.Query, ",") {
			if o = strings.TrimSpace(o); o != "" {
				out = append(out, o)
			}
		}
		return out, nil
	case "query":
		m := labelValues.FindStringSubmatch(v.Query)
		if m == nil {
			return nil, fmt.Errorf("variable %s: only label_values(selector, label) queries are understood, not %q", v.Name, v.Query)
		}
		series, err := s.Query(ctx, fmt.Sprintf("group by (%s) (%s)", m[2], m[1]), w)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", v.Name, err)
		}
		var out []string
		for _, sr := range series {
			if val := sr.Metric.Get(m[2]); val != "" {
				out = append(out, val)
			}
		}
		sort.Strings(out)
		return out, nil
	}
	return nil, nil
}

var varRef = regexp.MustCompile(`\$\{([a-zA-Z0-9_]+)(?::[a-z]+)?\}|\$([a-zA-Z0-9_]+)|\[\[([a-zA-Z0-9_]+)\]\]`)

// expand returns every query Grafana would send for expr: variables that
// allow All become one alternation of their values, the others take each
// value in turn.
func expand(expr string, vars map[string]Var, values map[string][]string, w Window) ([]string, error) {
	out := []string{expr}
	seen := map[string]bool{}
	for _, m := range varRef.FindAllStringSubmatch(expr, -1) {
		name := m[1] + m[2] + m[3]
		if seen[name] {
			continue
		}
		seen[name] = true
		var options []string
		switch name {
		case "__rate_interval":
			options = []string{model.Duration(w.RateInterval).String()}
		case "__interval":
			options = []string{model.Duration(w.Step).String()}
		case "__range":
			options = []string{model.Duration(w.End.Sub(w.Start)).String()}
		default:
			v, ok := vars[name]
			if !ok {
				// Not a variable, as $1 in label_replace: Grafana leaves it.
				continue
			}
			vals := values[name]
			if len(vals) == 0 {
				return nil, fmt.Errorf("variable $%s has no values", name)
			}
			options = vals
			if v.All {
				quoted := make([]string, len(vals))
				for i, val := range vals {
					// Escaped for the regular expression, then for the
					// PromQL string it sits in, as Grafana does.
					quoted[i] = strings.ReplaceAll(regexp.QuoteMeta(val), `\`, `\\`)
				}
				options = []string{"(" + strings.Join(quoted, "|") + ")"}
			}
		}
		forms := regexp.MustCompile(`\$\{` + name + `(?::[a-z]+)?\}|\$` + name + `\b|\[\[` + name + `\]\]`)
		var next []string
		for _, q := range out {
			for _, o := range options {
				next = append(next, forms.ReplaceAllLiteralString(q, o))
			}
		}
		out = next
	}
	return out, nil
}

// variables resolves every variable of d over the window.
func (s *Store) variables(ctx context.Context, d *Dashboard, w Window) (map[string]Var, map[string][]string, error) {
	vars := map[string]Var{}
	values := map[string][]string{}
	for _, v := range d.Vars {
		vals, err := s.values(ctx, v, w)
		if err != nil {
			return nil, nil, err
		}
		vars[v.Name], values[v.Name] = v, vals
	}
	return vars, values, nil
}

// PanelSeries evaluates the queries of d's panel titled title over the
// window, its variables at All (or their first option), as a dashboard
// opens, and names each series by its query's legend format.
func (s *Store) PanelSeries(ctx context.Context, d *Dashboard, title string, w Window) (map[string]promql.Series, error) {
	vars, values, err := s.variables(ctx, d, w)
	if err != nil {
		return nil, err
	}
	for name, v := range vars {
		if !v.All && len(values[name]) > 1 {
			values[name] = values[name][:1]
		}
	}
	for _, p := range d.Panels {
		if p.Title != title {
			continue
		}
		out := map[string]promql.Series{}
		for i, expr := range p.Exprs {
			queries, err := expand(expr, vars, values, w)
			if err != nil {
				return nil, err
			}
			for _, q := range queries {
				m, err := s.Query(ctx, q, w)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", q, err)
				}
				for _, series := range m {
					name := legendLabel.ReplaceAllStringFunc(p.Legends[i], func(ref string) string {
						return series.Metric.Get(legendLabel.FindStringSubmatch(ref)[1])
					})
					if name == "" {
						name = series.Metric.String()
					}
					out[name] = series
				}
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("no panel %q in %s", title, d.Title)
}

// Check evaluates every panel query of d over the window and reports each
// panel that shows nothing, each query that fails, and each query that
// shows nothing although all its metrics are among those owned (foreign
// ones, like node-exporter's, may be absent where no such exporter runs).
func (s *Store) Check(ctx context.Context, d *Dashboard, w Window, owned func(metric string) bool) ([]Problem, error) {
	vars, values, err := s.variables(ctx, d, w)
	if err != nil {
		return nil, err
	}
	var problems []Problem
	for _, v := range d.Vars {
		if v.Type == "query" && len(values[v.Name]) == 0 {
			problems = append(problems, Problem{Dashboard: d.Title, Panel: "variable $" + v.Name, Query: v.Query, Why: "no values"})
		}
	}
	for _, p := range d.Panels {
		shown := false
		for _, expr := range p.Exprs {
			queries, err := expand(expr, vars, values, w)
			if err != nil {
				problems = append(problems, Problem{Dashboard: d.Title, Panel: p.Title, Query: expr, Why: err.Error()})
				continue
			}
			for _, q := range queries {
				series, err := s.Query(ctx, q, w)
				if err != nil {
					problems = append(problems, Problem{Dashboard: d.Title, Panel: p.Title, Query: q, Why: err.Error()})
					continue
				}
				if len(series) > 0 {
					shown = true
				} else if allOwned(q, owned) {
					problems = append(problems, Problem{Dashboard: d.Title, Panel: p.Title, Query: q, Why: "no data"})
				}
			}
		}
		if !shown {
			problems = append(problems, Problem{Dashboard: d.Title, Panel: p.Title, Why: "the panel is empty"})
		}
	}
	return problems, nil
}

// allOwned reports whether every metric the query reads is owned.
func allOwned(q string, owned func(string) bool) bool {
	expr, err := parser.NewParser(parser.Options{}).ParseExpr(q)
	if err != nil {
		return true
	}
	all := true
	parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok && vs.Name != "" && !owned(vs.Name) {
			all = false
		}
		return nil
	})
	return all
}
