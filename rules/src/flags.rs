//! `RewriteRule` flags, short and long names as mod_rewrite spells them.

use super::template::Template;
use super::{Action, RuleFlags};

/// Redirect statuses a rule may ask for; others would not make the client follow `Location`.
const REDIRECT_STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Applies one flag to `flags` (and `nocase`, which the regex compiler needs).
pub(crate) fn apply(
    flags: &mut RuleFlags,
    nocase: &mut bool,
    key: &str,
    value: Option<&str>,
) -> Result<(), String> {
    let lower = key.to_ascii_lowercase();
    let no_value = |set: &mut bool| match value {
        None => {
            *set = true;
            Ok(())
        }
        Some(v) => Err(format!("flag `{key}` takes no value (got `{v}`)")),
    };
    match lower.as_str() {
        "l" | "last" | "end" => no_value(&mut flags.last),
        // In Apache PT hands the result back to URL mapping and implies L; here the rewritten
        // path always goes back to routing, so PT means exactly L.
        "pt" | "passthrough" => no_value(&mut flags.last),
        "nc" | "nocase" => no_value(nocase),
        "qsa" | "qsappend" => no_value(&mut flags.qs_append),
        "qsd" | "qsdiscard" => no_value(&mut flags.qs_discard),
        "qsl" | "qslast" => no_value(&mut flags.qs_last),
        "ne" | "noescape" => no_value(&mut flags.no_escape),
        // Paddock makes no sub-requests, so "skip on sub-requests" changes nothing.
        "ns" | "nosubreq" => no_value(&mut false),
        "f" | "forbidden" => set_status(flags, Action::Forbidden, key, value),
        "g" | "gone" => set_status(flags, Action::Gone, key, value),
        "r" | "redirect" => {
            flags.redirect = Some(redirect_status(value)?);
            Ok(())
        }
        "e" | "env" => {
            let value = value.filter(|v| !v.is_empty());
            let value = value.ok_or_else(|| format!("flag `{key}` needs `{key}=name:value`"))?;
            if value.starts_with(':') {
                return Err(format!("flag `{key}={value}` has an empty variable name"));
            }
            flags.env.push(Template::parse(value)?);
            Ok(())
        }
        "b" | "bnp" | "c" | "chain" | "co" | "cookie" | "dpi" | "discardpath" | "h" | "handler"
        | "n" | "next" | "p" | "proxy" | "s" | "skip" | "t" | "type" => Err(format!(
            "unsupported flag `{key}`; Paddock supports F, G, L, END, PT, R[=code], E=var:value, \
             NC, QSA, QSD, QSL, NE, NS"
        )),
        _ => Err(format!("unknown flag `{key}`")),
    }
}

fn set_status(
    flags: &mut RuleFlags,
    action: Action,
    key: &str,
    value: Option<&str>,
) -> Result<(), String> {
    if let Some(v) = value {
        return Err(format!("flag `{key}` takes no value (got `{v}`)"));
    }
    flags.status = Some(action);
    Ok(())
}

/// `R`, `R=permanent|temp|seeother`, or `R=code` with one of [`REDIRECT_STATUSES`].
fn redirect_status(value: Option<&str>) -> Result<u16, String> {
    let Some(value) = value.filter(|v| !v.is_empty()) else { return Ok(302) };
    let status = match value.to_ascii_lowercase().as_str() {
        "permanent" => 301,
        "temp" => 302,
        "seeother" => 303,
        v => v.parse::<u16>().map_err(|_| format!("invalid redirect status `{value}`"))?,
    };
    if REDIRECT_STATUSES.contains(&status) {
        Ok(status)
    } else {
        Err(format!(
            "unsupported redirect status `{value}`; use 301, 302, 303, 307 or 308 (and [F] or \
             [G] for 403 and 410)"
        ))
    }
}
