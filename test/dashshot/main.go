// Command dashshot draws panels of Backstop's Grafana dashboard as SVG from
// a running controller's metrics, where Grafana itself is not at hand: it
// scrapes the metrics endpoint (as Prometheus would) for a while, evaluates
// the panels' queries with Prometheus's PromQL engine, and plots each
// panel's series. The README's Monitoring pictures come from it, scraping
// `make run`.
package main

import (
	"context"
	"flag"
	"fmt"
	"html"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/prometheus/promql"

	"github.com/backstop-sh/backstop/test"
	"github.com/backstop-sh/backstop/test/dashboard"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:8080/metrics", "the controller's metrics endpoint")
	duration := flag.Duration("duration", 5*time.Minute, "how long to scrape (Ctrl-C draws what is there)")
	every := flag.Duration("every", 2*time.Second, "scrape interval")
	out := flag.String("out", filepath.Join(test.Root, "bin", "dashshot"), "directory for the SVG files")
	panels := flag.String("panels", "Spot share of nodes and vCPUs,Nodes by NodePool and capacity type,Fallbacks by reason and pool,Unavailable offerings",
		"titles of the panels to draw, comma separated")
	flag.Parse()
	if err := run(*url, *duration, *every, *out, strings.Split(*panels, ",")); err != nil {
		fmt.Fprintf(os.Stderr, "dashshot: %v\n", err)
		os.Exit(1)
	}
}

func run(url string, duration, every time.Duration, out string, titles []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := dashboard.Load(filepath.Join(test.Root, "charts", "backstop", "dashboards", "backstop.json"))
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "dashshot")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()
	store, err := dashboard.NewStore(dir)
	if err != nil {
		return err
	}
	defer func() { _ = store.Close() }()
	start := time.Now()
	end := start
	tick := time.NewTicker(every)
	defer tick.Stop()
	fmt.Printf("scraping %s every %s for %s (Ctrl-C draws what is there)\n", url, every, duration)
scraping:
	for time.Since(start) < duration {
		now := time.Now()
		if err := store.Scrape(context.Background(), url, map[string]string{"job": "backstop"}, now); err != nil {
			fmt.Fprintf(os.Stderr, "scrape: %v\n", err)
		} else {
			end = now
		}
		select {
		case <-ctx.Done():
			break scraping
		case <-tick.C:
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	w := dashboard.Window{Start: start, End: end, Step: every, RateInterval: 20 * time.Second}
	for _, title := range titles {
		m, err := store.PanelSeries(context.Background(), d, title, w)
		if err != nil {
			return err
		}
		series := lines(m)
		path := filepath.Join(out, slug(title)+".svg")
		if err := os.WriteFile(path, []byte(svg(title, series, w)), 0o644); err != nil {
			return err
		}
		fmt.Println("wrote", path)
	}
	return nil
}

type point struct {
	t time.Time
	v float64
}

type line struct {
	name   string
	points []point
}

// lines orders the series by name.
func lines(m map[string]promql.Series) []line {
	var out []line
	for name, s := range m {
		l := line{name: name}
		for _, f := range s.Floats {
			l.points = append(l.points, point{t: time.UnixMilli(f.T), v: f.F})
		}
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func slug(s string) string {
	return strings.Trim(strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return '-'
	}, s), "-")
}

var palette = []string{"#3274d9", "#e0752d", "#56a64b", "#a352cc", "#e02f44", "#37872d", "#8ab8ff", "#f2cc0c"}

// svg plots the series over the window, with axes and a legend.
func svg(title string, series []line, w dashboard.Window) string {
	const width, height, left, right, top, bottom = 720, 300, 56, 200, 34, 30
	plotW, plotH := float64(width-left-right), float64(height-top-bottom)
	maxV := 0.0
	for _, s := range series {
		for _, p := range s.points {
			maxV = math.Max(maxV, p.v)
		}
	}
	if maxV == 0 {
		maxV = 1
	}
	maxV = niceCeil(maxV)
	span := w.End.Sub(w.Start).Seconds()
	if span <= 0 {
		span = 1
	}
	x := func(t time.Time) float64 { return float64(left) + t.Sub(w.Start).Seconds()/span*plotW }
	y := func(v float64) float64 { return float64(top) + plotH - v/maxV*plotH }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#181b1f"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" fill="#d8d9da" font-size="13">%s</text>`+"\n", left, html.EscapeString(title))
	for i := 0; i <= 4; i++ {
		v := maxV * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%d" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#2c3235"/>`+"\n", left, float64(left)+plotW, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#9fa7b3" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, format(v))
	}
	for i := 0; i <= 4; i++ {
		t := w.Start.Add(time.Duration(float64(w.End.Sub(w.Start)) * float64(i) / 4))
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#9fa7b3" text-anchor="middle">%s</text>`+"\n", x(t), height-10,
			fmt.Sprintf("%.0fs", t.Sub(w.Start).Seconds()))
	}
	for i, s := range series {
		color := palette[i%len(palette)]
		var path strings.Builder
		for j, p := range s.points {
			cmd := "L"
			if j == 0 || p.t.Sub(s.points[j-1].t) > 2*w.Step {
				cmd = "M"
			}
			fmt.Fprintf(&path, "%s%.1f %.1f ", cmd, x(p.t), y(p.v))
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.TrimSpace(path.String()), color)
		ly := top + 14*i + 8
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="3" fill="%s"/>`, width-right+12, ly-4, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#d8d9da">%s</text>`+"\n", width-right+28, ly, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func format(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
