// Package config reads a command's settings from flags, environment variables
// and a YAML config file, in that order of precedence.
//
// Every flag can be set three ways:
//
//	--kafka-brokers=a:9092,b:9092          on the command line
//	KUBESTREAM_KAFKA_BROKERS=a:9092,b:9092  in the environment
//	kafka-brokers: [a:9092, b:9092]         in the file named by --config
//
// so secrets need never appear on a command line.
package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// EnvPrefix starts the environment variable of every flag.
const EnvPrefix = "KUBESTREAM_"

// EnvName returns the environment variable that sets flag name.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// Parse parses args into fs, then fills flags not given on the command line
// from the environment and from the YAML file named by the flag "config"
// (when fs defines it and it is set). Unknown keys in the file are an error,
// so a typo does not pass silently.
func Parse(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })

	var errs []error
	fs.VisitAll(func(f *pflag.Flag) {
		if set[f.Name] {
			return
		}
		if v, ok := os.LookupEnv(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("environment %s: %w", EnvName(f.Name), err))
			}
			set[f.Name] = true
		}
	})
	if f := fs.Lookup("config"); f != nil && f.Value.String() != "" {
		if err := applyFile(fs, f.Value.String(), set); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func applyFile(fs *pflag.FlagSet, path string, set map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	var values map[string]any
	if err := yaml.Unmarshal(data, &values); err != nil {
		return fmt.Errorf("config file %s is not valid YAML: %w", path, err)
	}
	keys := make([]string, 0, len(values))
	for k := range values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var errs []error
	for _, key := range keys {
		f := fs.Lookup(key)
		if f == nil || key == "config" {
			errs = append(errs, fmt.Errorf("config file %s: unknown setting %q (settings are the flag names, e.g. %q)", path, key, "kafka-brokers"))
			continue
		}
		if set[key] {
			continue
		}
		for _, v := range flatten(values[key]) {
			if err := fs.Set(key, v); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, key, err))
			}
		}
	}
	return errors.Join(errs...)
}

// flatten turns a YAML value into the strings a flag's Set accepts; a list
// sets a slice flag element by element.
func flatten(v any) []string {
	switch x := v.(type) {
	case nil:
		return []string{""}
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			out = append(out, fmt.Sprint(e))
		}
		return out
	case float64:
		if x == float64(int64(x)) {
			return []string{fmt.Sprint(int64(x))}
		}
		return []string{fmt.Sprint(x)}
	default:
		return []string{fmt.Sprint(x)}
	}
}

// Secret returns the value of a secret given either directly or as a file
// path (the file's content, trailing newline removed). Only one may be set.
func Secret(value, file, what string) (string, error) {
	if value != "" && file != "" {
		return "", fmt.Errorf("%s given both directly and as a file: use one", what)
	}
	if file == "" {
		return value, nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("read %s file: %w", what, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}
