import assert from "node:assert/strict";
import { ConfigSyntaxError, parseConfigText } from "../../../lib/config/mod.ts";

function only(text: string) {
  const lines = parseConfigText(text);
  assert.equal(lines.length, 1, `one assignment in ${JSON.stringify(text)}`);
  return lines[0]!;
}

function syntaxErrorAt(text: string, line: number, pattern: RegExp) {
  assert.throws(() => parseConfigText(text), (e: unknown) => {
    assert.ok(e instanceof ConfigSyntaxError, String(e));
    assert.ok(e instanceof SyntaxError);
    assert.equal(e.line, line);
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("name = value and name value both assign", () => {
  assert.deepEqual(parseConfigText("a = 1\nb 2\nc=3\n"), [
    { name: "a", value: "1", line: 1, quoted: false },
    { name: "b", value: "2", line: 2, quoted: false },
    { name: "c", value: "3", line: 3, quoted: false },
  ]);
});

Deno.test("blank lines and comment lines are skipped and line numbers count them", () => {
  const lines = parseConfigText("\n# a comment\n   \n\t# indented comment\npgraft.port = 7001\n");
  assert.deepEqual(lines, [{ name: "pgraft.port", value: "7001", line: 5, quoted: false }]);
});

Deno.test("a comment after a value ends the line", () => {
  assert.equal(only("pgraft.port = 7001 # the peer port").value, "7001");
  assert.equal(only("pgraft.port = 7001# no space").value, "7001");
  assert.equal(only("pgraft.address = 'h' # quoted").value, "h");
});

Deno.test("a # inside quotes is part of the value", () => {
  assert.equal(only("pgraft.auth_secret = 'a#b' # comment").value, "a#b");
});

Deno.test("names are lower-cased and may contain dots", () => {
  const line = only("PgRaft.Heartbeat_Interval = 100ms");
  assert.equal(line.name, "pgraft.heartbeat_interval");
  assert.equal(only("a.b.c = x").name, "a.b.c");
});

Deno.test("quoted values resolve '' to a quote", () => {
  const line = only("pgraft.cluster_name = 'it''s'");
  assert.equal(line.value, "it's");
  assert.equal(line.quoted, true);
  assert.equal(only("x = ''").value, "");
  assert.equal(only("x = ''''").value, "'");
});

Deno.test("quoted values resolve backslash escapes", () => {
  assert.equal(only(String.raw`x = 'a\nb'`).value, "a\nb");
  assert.equal(only(String.raw`x = '\t\b\r\f'`).value, "\t\b\r\f");
  assert.equal(only(String.raw`x = 'back\\slash'`).value, "back\\slash");
  assert.equal(only(String.raw`x = 'it\'s'`).value, "it's");
  assert.equal(only(String.raw`x = '\101\060\7'`).value, "A0\x07");
  assert.equal(only(String.raw`x = '\q'`).value, "q", "an unknown escape is the character");
});

Deno.test("unquoted values are single tokens: numbers with units, identifiers, paths", () => {
  assert.equal(only("x = 90ms").value, "90ms");
  assert.equal(only("x = 1.5s").value, "1.5s");
  assert.equal(only("x = 64kB").value, "64kB");
  assert.equal(only("x = -1").value, "-1");
  assert.equal(only("x = on").value, "on");
  assert.equal(only("x = /var/run/postgresql").value, "/var/run/postgresql");
  assert.equal(only("x = 10.0.0.1").value, "10.0.0.1");
  assert.equal(only("x = 0x1F").quoted, false);
});

Deno.test("a bare value with spaces is a syntax error at its line", () => {
  syntaxErrorAt("a = 1\npgraft.cluster_name = two words\n", 2, /syntax error near "words"/);
  syntaxErrorAt("x = 100 ms", 1, /near "ms".*single quotes/);
});

Deno.test("a line without a value is a syntax error", () => {
  syntaxErrorAt("pgraft.port =\n", 1, /no value for "pgraft.port"/);
  syntaxErrorAt("pgraft.port # nothing\n", 1, /no value/);
});

Deno.test("an unterminated quote is a syntax error at its line", () => {
  syntaxErrorAt("a = 1\n\nx = 'open\ny = 2\n", 3, /unterminated quoted string/);
  syntaxErrorAt(String.raw`x = 'ends in backslash\'`, 1, /unterminated/);
});

Deno.test("text after a quoted value is a syntax error", () => {
  syntaxErrorAt("x = 'a' 'b'", 1, /syntax error near "'b'"/);
});

Deno.test("a line that does not start with a name is a syntax error", () => {
  syntaxErrorAt("= 5", 1, /syntax error near "="/);
  syntaxErrorAt("9lives = 1", 1, /syntax error/);
  syntaxErrorAt("x = @", 1, /near "@"/);
});

Deno.test("CRLF line endings are accepted", () => {
  assert.deepEqual(parseConfigText("a = 1\r\nb = 'q'\r\n").map((l) => [l.name, l.value]), [
    ["a", "1"],
    ["b", "q"],
  ]);
});
