package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"regexp"
	"time"
)

var addressRE = regexp.MustCompile(`"Serving metrics and health" address="([^"]+)"`)

// ScanLog copies a process's stderr to log line by line until it ends.
// The address of its first "Serving metrics and health" line (kubestream's,
// and the floor watcher's) is sent on addr when addr has room (make it
// buffered); each, when not nil, gets every line.
func ScanLog(stderr io.Reader, log io.Writer, addr chan<- string, each func(line string)) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		if m := addressRE.FindStringSubmatch(line); m != nil {
			select {
			case addr <- m[1]:
			default:
			}
		}
		if each != nil {
			each(line)
		}
	}
}

// Sleep waits for d or until ctx ends, and returns ctx's error if it ended.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Seconds formats a duration in seconds for a results table: "-" for NaN,
// milliseconds below one second (one decimal below 10 ms), else seconds with
// two decimals; sep goes between the number and the unit.
func Seconds(s float64, sep string) string {
	if math.IsNaN(s) {
		return "-"
	}
	if s < 0.01 {
		return fmt.Sprintf("%.1f%sms", s*1000, sep)
	}
	if s < 1 {
		return fmt.Sprintf("%.0f%sms", s*1000, sep)
	}
	return fmt.Sprintf("%.2f%ss", s, sep)
}
