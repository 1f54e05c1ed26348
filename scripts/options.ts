/** The value after `--name` on the command line, else `fallback`: the evaluation scripts' option style. */
export function optionValue(argv: readonly string[], name: string, fallback: string): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : fallback;
}
