// composecheck loads and merges compose files with compose-go, the loader that the
// `docker compose` CLI itself uses, and prints the effective model as JSON.
// Usage: go run . [-profile NAME]... FILE...   (run from the project directory)
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

type multi []string

func (m *multi) String() string     { return strings.Join(*m, ",") }
func (m *multi) Set(v string) error { *m = append(*m, v); return nil }

func main() {
	var profiles, envFiles multi
	flag.Var(&profiles, "profile", "profile to enable (repeatable)")
	flag.Var(&envFiles, "env-file", "env file for interpolation (repeatable)")
	flag.Parse()
	opts, err := cli.NewProjectOptions(flag.Args(),
		// same order as docker compose's own CLI: the shell's environment wins over env files
		cli.WithWorkingDirectory("."),
		cli.WithOsEnv,
		cli.WithEnvFiles(envFiles...),
		cli.WithDotEnv,
		cli.WithName("streampair"),
		cli.WithProfiles(profiles),
		cli.WithResolvedPaths(false),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := json.MarshalIndent(project, "", "  ")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
