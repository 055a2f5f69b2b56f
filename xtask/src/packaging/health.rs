//! Argo CD's health checks under Lua 5.1.
//!
//! Each kind's folder in `manifests/argocd/health/` holds `health.lua`,
//! sample objects in `testdata/*.json` and `health_test.yaml` (Argo CD's
//! own layout for resource customizations, written in JSON, which is YAML
//! too) naming each sample's expected status and message. One generated
//! Lua program runs every script over its samples, each in an environment
//! like Argo CD's (the object as `obj`; the base and table libraries only:
//! no string, os, io or loading), and prints what each returned.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::cmd;

/// The kinds with a health check, and the statuses their samples must cover.
const KINDS: [(&str, &[&str]); 3] = [
    (
        "Store",
        &["Healthy", "Progressing", "Degraded", "Suspended"],
    ),
    ("ServiceDeployment", &["Healthy", "Progressing", "Degraded"]),
    ("PaymentProvider", &["Healthy", "Progressing", "Degraded"]),
];

/// Where the health checks live, relative to the workspace root.
pub const HEALTH_DIR: &str = "manifests/argocd/health";

struct Case {
    kind: &'static str,
    script: PathBuf,
    sample: PathBuf,
    object: Value,
    status: String,
    message: String,
}

/// Runs every case; returns how many passed (all of them, or an error).
pub fn check(root: &Path, lua: &Path) -> Result<usize> {
    let mut cases = Vec::new();
    for (kind, statuses) in KINDS {
        let dir = root.join(HEALTH_DIR).join(kind);
        let script = dir.join("health.lua");
        if !script.exists() {
            bail!("{} is missing", script.display());
        }
        let tests = dir.join("health_test.yaml");
        let text = fs::read_to_string(&tests)
            .with_context(|| format!("cannot read {}", tests.display()))?;
        let tests_json: Value = serde_json::from_str(&strip_comments(&text))
            .with_context(|| format!("{} is not JSON (after its # comments)", tests.display()))?;
        let list = tests_json["tests"]
            .as_array()
            .with_context(|| format!("{} has no `tests` list", tests.display()))?;
        for test in list {
            let input = test["inputPath"]
                .as_str()
                .with_context(|| format!("a test in {} has no inputPath", tests.display()))?;
            let sample = dir.join(input);
            let object: Value = serde_json::from_str(
                &fs::read_to_string(&sample)
                    .with_context(|| format!("cannot read {}", sample.display()))?,
            )
            .with_context(|| format!("{} is not JSON", sample.display()))?;
            if object["kind"] != kind {
                bail!("{} is not a {kind}", sample.display());
            }
            let expected = &test["healthStatus"];
            cases.push(Case {
                kind,
                script: script.clone(),
                sample,
                object,
                status: expected["status"].as_str().unwrap_or_default().to_owned(),
                message: expected["message"].as_str().unwrap_or_default().to_owned(),
            });
        }
        for status in statuses {
            if !cases.iter().any(|c| c.kind == kind && c.status == *status) {
                bail!(
                    "{} has no sample whose expected health is {status}",
                    tests.display()
                );
            }
        }
    }

    let program = program(&cases);
    let file = super::work_dir()?.join("health-checks.lua");
    fs::write(&file, program)?;
    let output = cmd::capture(Command::new(lua).arg(&file))?;
    let results: Vec<(&str, &str)> = output
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            let _index = fields.next()?;
            Some((fields.next()?, fields.next().unwrap_or_default()))
        })
        .collect();
    if results.len() != cases.len() {
        bail!(
            "lua printed {} results for {} cases:\n{output}",
            results.len(),
            cases.len()
        );
    }
    let mut failures = Vec::new();
    for (case, (status, message)) in cases.iter().zip(&results) {
        let sample = case
            .sample
            .strip_prefix(root)
            .unwrap_or(&case.sample)
            .display();
        if *status != case.status || *message != case.message {
            failures.push(format!(
                "{sample}: expected {} \"{}\", got {status} \"{message}\"",
                case.status, case.message
            ));
        } else {
            eprintln!("    ok  {sample}: {status}");
        }
    }
    if !failures.is_empty() {
        bail!(
            "{} of {} health-check samples give another health:\n  {}",
            failures.len(),
            cases.len(),
            failures.join("\n  ")
        );
    }
    Ok(cases.len())
}

/// The file without its leading `#` comment lines.
fn strip_comments(text: &str) -> String {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The Lua program that runs every case and prints `index TAB status TAB
/// message` for each.
fn program(cases: &[Case]) -> String {
    let mut out = String::from(
        r#"-- Generated by `cargo xtask packaging lua`: runs Emporium's Argo CD health
-- checks over their samples.
local loadfile, setfenv, pcall, tostring, type, write =
  loadfile, setfenv, pcall, tostring, type, io.write
local byte_of, char_of, concat = string.byte, string.char, table.concat

-- What Argo CD's Lua VM offers a health check: the base library and the
-- table library; strings have no methods there either.
local base = {
  assert = assert, error = error, ipairs = ipairs, next = next, pairs = pairs,
  pcall = pcall, select = select, tonumber = tonumber, tostring = tostring,
  type = type, unpack = unpack, xpcall = xpcall, table = table,
}
getmetatable("").__index = {}

-- One line per result: tabs and line breaks become spaces.
local function flat(text)
  local out = {}
  for i = 1, #text do
    local byte = byte_of(text, i)
    out[#out + 1] = (byte == 9 or byte == 10 or byte == 13) and " " or char_of(byte)
  end
  return concat(out)
end

local function health(index, script, obj)
  local env = { obj = obj }
  for name, value in pairs(base) do env[name] = value end
  local status, message
  local chunk, err = loadfile(script)
  if chunk == nil then
    status, message = "ERROR", tostring(err)
  else
    setfenv(chunk, env)
    local ok, hs = pcall(chunk)
    if not ok then
      status, message = "ERROR", tostring(hs)
    elseif type(hs) ~= "table" then
      status, message = "ERROR", "the script returned " .. type(hs) .. ", not a table"
    else
      status, message = tostring(hs.status), tostring(hs.message)
    end
  end
  write(index, "\t", flat(status), "\t", flat(message), "\n")
end
"#,
    );
    for (index, case) in cases.iter().enumerate() {
        let _ = writeln!(
            out,
            "health({index}, {}, {})",
            lua_string(&case.script.display().to_string()),
            lua_value(&case.object)
        );
    }
    out
}

/// A JSON value as a Lua literal; `null` becomes `nil` (an absent field,
/// as in Argo CD).
pub fn lua_value(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => lua_string(s),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(lua_value).collect();
            format!("{{{}}}", items.join(", "))
        }
        Value::Object(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|(k, v)| format!("[{}] = {}", lua_string(k), lua_value(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
    }
}

/// A Lua 5.1 string literal: printable ASCII as is, everything else as a
/// decimal byte escape.
pub fn lua_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for byte in text.bytes() {
        match byte {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(byte as char),
            _ => {
                let _ = write!(out, "\\{byte:03}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_becomes_lua_literals() {
        let value = json!({"a": [1, "x\"y", null, true], "b": {}, "é": 1.5});
        assert_eq!(
            lua_value(&value),
            r#"{["a"] = {1, "x\"y", nil, true}, ["b"] = {}, ["\195\169"] = 1.5}"#
        );
        assert_eq!(lua_string("a\\b\nc"), r#""a\\b\010c""#);
    }

    #[test]
    fn comment_lines_are_dropped() {
        assert_eq!(strip_comments("# one\n  # two\n{\"a\": 1}\n"), "{\"a\": 1}");
    }
}
