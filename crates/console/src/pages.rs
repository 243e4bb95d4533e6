//! The console's pages: plain HTML, no script, escaped.

use lagesbild_people::ActiveSession;

/// `text` safe in HTML text and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // The language markers of the templates ([`localise`]).
            '«' => out.push_str("&laquo;"),
            '»' => out.push_str("&raquo;"),
            '|' => out.push_str("&#124;"),
            c => out.push(c),
        }
    }
    out
}

/// The language a page is shown in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Svenska.
    Sv,
    /// English.
    En,
}

impl Lang {
    /// From the `lang` cookie, else the browser's `Accept-Language`, else Swedish.
    pub(crate) fn of(headers: &axum::http::HeaderMap) -> Self {
        match crate::cookie(headers, "lang") {
            Some("en") => return Self::En,
            Some("sv") => return Self::Sv,
            _ => {}
        }
        let accepted = headers
            .get(axum::http::header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // The first of Swedish or English the browser lists wins.
        for tag in accepted.split(',') {
            let primary = tag.split(';').next().unwrap_or_default().trim();
            let primary = primary
                .split('-')
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            match primary.as_str() {
                "sv" => return Self::Sv,
                "en" => return Self::En,
                _ => {}
            }
        }
        Self::Sv
    }
}

/// Picks `sv` or `en` out of each `«sv|en»` of a page's template. Text from
/// outside is escaped ([`escape`]), so it can't hold a marker.
pub(crate) fn localise(html: &str, lang: Lang) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(start) = rest.find('«') {
        out.push_str(&rest[..start]);
        let after = &rest[start + '«'.len_utf8()..];
        let Some(end) = after.find('»') else {
            out.push_str(&rest[start..]);
            return out;
        };
        let (sv, en) = after[..end]
            .split_once('|')
            .unwrap_or((&after[..end], &after[..end]));
        out.push_str(if lang == Lang::Sv { sv } else { en });
        rest = &after[end + '»'.len_utf8()..];
    }
    out.push_str(rest);
    out
}

/// The link to the other language.
const SWITCH: &str = "<p class=\"lang\">«<a href=\"/lang/en\" lang=\"en\">English</a>|<a href=\"/lang/sv\" lang=\"sv\">Svenska</a>»</p>";

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#111;background:#fff}\
label{display:block;margin:.8rem 0 .2rem}input{font-size:1rem;padding:.4rem;width:100%;box-sizing:border-box}\
button,a.button{display:inline-block;margin-top:1rem;font-size:1rem;padding:.5rem 1rem;background:#0b3d91;color:#fff;border:0;text-decoration:none}\
p.error{color:#8b0000}:focus-visible{outline:3px solid #0b3d91;outline-offset:2px}";

/// A page; `title` is a template (its language markers are picked), never outside text.
fn document(title: &'static str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"«sv|en»\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}</style></head><body>{SWITCH}{body}</body></html>",
        title
    )
}

pub(crate) fn login(
    org: &str,
    accounts: bool,
    issuer: Option<&str>,
    form_token: &str,
    error: Option<(&str, &str)>,
) -> String {
    let mut body = format!("<h1>Lägesbild: {}</h1>", escape(org));
    if let Some((sv, en)) = error {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">«{}|{}»</p>",
            escape(sv),
            escape(en)
        ));
    }
    if let Some(issuer) = issuer {
        body.push_str(&format!(
            "<p><a class=\"button\" id=\"oidc\" href=\"/oidc/start\">«Logga in med|Sign in with» {}</a></p>",
            escape(issuer)
        ));
    }
    if accounts {
        body.push_str(&format!(
            "<form method=\"post\" action=\"/login\"><input type=\"hidden\" name=\"form\" value=\"{}\">\
<label for=\"account\">«Konto|Account»</label><input id=\"account\" name=\"account\" autocomplete=\"username\" required>\
<label for=\"password\">«Lösenord|Password»</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
<button type=\"submit\">«Logga in|Sign in»</button></form>",
            escape(form_token)
        ));
    }
    if issuer.is_none() && !accounts {
        body.push_str("<p>No one can sign in here yet: the node has no accounts and trusts no identity provider.</p>");
    }
    document("«Logga in|Sign in»", &body)
}

pub(crate) fn home(org: &str, session: &ActiveSession, tiles: Option<&crate::Tiles>) -> String {
    let roles: Vec<&str> = session.roles.iter().map(|r| r.name()).collect();
    let categories: String = CATEGORIES
        .iter()
        .map(|c| format!("<option value=\"{c}\">{c}</option>"))
        .collect();
    let body = format!(
        "<header><h1>Lägesbild: {}</h1><p id=\"who\">«Inloggad som|Signed in as» {} ({}) «som|as» {}</p>\
<p><a href=\"/audit\">«Åtkomstlogg|Access log»</a> · <a href=\"/policy\">«Policy|Policy»</a></p>\
<form method=\"post\" action=\"/logout\"><button type=\"submit\">«Logga ut|Sign out»</button></form></header>\
<main><div id=\"controls\">\
<label for=\"window\">«Tid|Window»</label><select id=\"window\"><option value=\"24h\">24 h</option><option value=\"week\">«Vecka|Week»</option><option value=\"month\" selected>«Månad|Month»</option><option value=\"custom\">«Eget intervall|Custom range»</option></select>\
<span id=\"custom\" hidden><label for=\"from\">«Från|From»</label><input type=\"datetime-local\" id=\"from\"><label for=\"to\">«Till|To»</label><input type=\"datetime-local\" id=\"to\"></span>\
<label for=\"cell\">«Ruta|Cell» (m)</label><select id=\"cell\"><option>100</option><option selected>250</option><option>500</option><option>1000</option></select>\
<label for=\"category\">«Kategori|Category»</label><select id=\"category\"><option value=\"\">«Alla|All»</option>{categories}</select>\
<label><input type=\"checkbox\" id=\"by-hour\"> «Timme för timme|Hour by hour»</label>\
<label for=\"hour\">«Timme|Hour»</label><input type=\"range\" id=\"hour\" min=\"0\" max=\"0\" value=\"0\" disabled><output id=\"hour-label\" for=\"hour\"></output>\
</div><div id=\"map\" role=\"region\" aria-label=\"«Karta|Map»\" aria-describedby=\"map-keys\"></div>\
<p id=\"map-keys\" class=\"hint\">«Piltangenter flyttar kartan, + och − zoomar, Enter visar rutan i mitten.|Arrow keys move the map, + and − zoom, Enter shows the cell in the centre.»</p>\
<p id=\"status\" aria-live=\"polite\"></p><h2>«Timme på dygnet|Hour of day»</h2><div id=\"hours\" class=\"chart\" role=\"img\" data-title=\"«Timme på dygnet|Hour of day»\" aria-label=\"«Timme på dygnet|Hour of day»\"></div>\
<h2>«Timme i veckan|Hour of week»</h2><div id=\"week-hours\" class=\"chart\" role=\"img\" data-title=\"«Timme i veckan|Hour of week»\" aria-label=\"«Timme i veckan|Hour of week»\"></div>\
<h2>«Svar|Answers»</h2><ul id=\"answers\"></ul>\
<h2>«Partner|Partners»</h2><p id=\"partners-status\"></p><table id=\"partners\"><thead><tr><th>Org</th><th>«Roll|Role»</th><th>«Nås|Reachable»</th><th>RTT</th><th>Version</th><th>«Integritetsbudget kvar i dag (ε)|Privacy budget left today (ε)»</th><th>«Anmärkning|Note»</th></tr></thead><tbody></tbody></table>\
<h2>«Händelser|Live events»</h2><label><input type=\"checkbox\" id=\"notify\"> «Aviseringar|Notifications»</label><label><input type=\"checkbox\" id=\"sound\"> «Ljud vid larm|Sound on alerts»</label>\
<p id=\"live\" aria-live=\"polite\"></p><ul id=\"events\"></ul></main>\
<script src=\"/assets/leaflet.js\"></script><script src=\"/assets/console.js\"></script>",
        escape(org),
        escape(&session.person.sub),
        escape(&session.person.issuer),
        escape(&roles.join(", "))
    );
    format!(
        "<!DOCTYPE html><html lang=\"«sv|en»\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>Lägesbild</title>\
<link rel=\"stylesheet\" href=\"/assets/leaflet.css\"><style>{STYLE}body{{max-width:none;margin:1rem}}#map{{height:70vh;border:1px solid #555}}\
#controls{{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}}#controls label{{margin:0}}#controls input{{width:auto}}#controls select{{font-size:1rem;padding:.3rem}}\
header{{display:flex;flex-wrap:wrap;gap:1rem;align-items:center}}.chart{{display:flex;align-items:flex-end;gap:2px;height:6rem;max-width:40rem;border-bottom:1px solid #555}}\
.chart .bar{{flex:1;background:#0b3d91;min-height:1px}}.trend{{height:3rem;width:12rem}}table{{border-collapse:collapse}}td,th{{border-bottom:1px solid #ccc;padding:.2rem .5rem;text-align:left}}</style></head><body{tiles}>{SWITCH}{body}</body></html>",
        tiles = tiles.map_or_else(String::new, |t| format!(
            " data-tiles=\"{}\" data-attribution=\"{}\"",
            escape(&t.url),
            escape(&t.attribution)
        ))
    )
}

pub(crate) fn audit(org: &str, session: &ActiveSession) -> String {
    let body = format!(
        "<header><h1>Lägesbild: {} — «åtkomstlogg|access log»</h1><p id=\"who\">{} ({})</p><p><a href=\"/\">«Karta|Map»</a></p></header>\
<form id=\"filters\"><label for=\"org\">Organisation</label><input id=\"org\" name=\"org\">\
<label for=\"person\">Person</label><input id=\"person\" name=\"person\">\
<label for=\"purpose\">«Ändamål|Purpose»</label><input id=\"purpose\" name=\"purpose\">\
<label for=\"from\">«Från|From»</label><input id=\"from\" name=\"from\" type=\"datetime-local\">\
<label for=\"to\">«Till|To»</label><input id=\"to\" name=\"to\" type=\"datetime-local\">\
<button type=\"submit\">«Visa|Show»</button> <a id=\"export\" href=\"/api/v1/audit/entries?limit=1000\" download=\"access-log.json\">«Exportera|Export»</a></form>\
<p id=\"status\" aria-live=\"polite\"></p><table id=\"entries\"><thead><tr><th>#</th><th>«Tid|Time»</th><th>«Riktning|Direction»</th><th>Org</th><th>«Vem|Who»</th><th>«Anrop|Call»</th><th>«Beslut|Decision»</th><th>«Skäl|Reason»</th></tr></thead><tbody></tbody></table>\
<h2>«Kontrollpunkter|Checkpoints»</h2><p id=\"latest\" data-entries=\"«poster|entries»\" data-signature=\"«signatur:|signature:»\" aria-live=\"polite\"></p>\
<table id=\"kept\"><caption>«De senaste sparade kontrollpunkterna, kontrollerade mot den senaste|The newest kept checkpoints, checked against the latest»</caption><thead><tr><th>«Storlek|Size»</th><th>«Signatur|Signature»</th><th>«Förenlig med den senaste|Consistent with the latest»</th></tr></thead><tbody></tbody></table>\
<h2>«Bevittnat hos partner|Witnessed at peers»</h2><table id=\"witnessed\"><thead><tr><th>Org</th><th>«Storlek|Size»</th><th>«Sedd|Seen»</th><th>«Larm|Alarm»</th></tr></thead><tbody></tbody></table>\
<script src=\"/assets/audit.js\"></script>",
        escape(org),
        escape(&session.person.sub),
        escape(&session.person.issuer),
    );
    document_wide("«Åtkomstlogg|Access log»", &body)
}

pub(crate) fn policy(org: &str, session: &ActiveSession) -> String {
    let body = format!(
        "<header><h1>Lägesbild: {} — «policy|policy»</h1><p id=\"who\">{} ({})</p><p><a href=\"/\">«Karta|Map»</a></p></header>\
<label for=\"peer\">«Partner|Peer»</label><select id=\"peer\"></select>\
<h2>«Får nu|May receive now»</h2><pre id=\"now\"></pre>\
<h2>«Utkast|Draft»</h2><textarea id=\"draft\" rows=\"18\" spellcheck=\"false\" aria-label=\"«Utkast|Draft»\"></textarea>\
<p><button id=\"preview\" type=\"button\">«Förhandsgranska|Preview»</button> <button id=\"save\" type=\"button\">«Spara|Save»</button></p>\
<p id=\"status\" role=\"status\" aria-live=\"polite\"></p><h2>«Skulle få|Would receive»</h2><pre id=\"would\"></pre>\
<script src=\"/assets/policy.js\"></script>",
        escape(org),
        escape(&session.person.sub),
        escape(&session.person.issuer),
    );
    document_wide("«Policy|Policy»", &body)
}

/// A wide page; `title` is a template, as for [`document`].
fn document_wide(title: &'static str, body: &str) -> String {
    format!(
        "<!DOCTYPE html><html lang=\"«sv|en»\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{}</title><style>{STYLE}body{{max-width:none;margin:1rem}}table{{border-collapse:collapse;width:100%}}td,th{{border-bottom:1px solid #ccc;padding:.2rem .4rem;text-align:left;font-size:.9rem}}#filters{{display:flex;flex-wrap:wrap;gap:.5rem;align-items:end}}#filters input{{width:auto}}textarea{{width:100%;font-family:monospace;font-size:.9rem}}pre{{white-space:pre-wrap;background:#f4f4f4;padding:.5rem}}</style></head><body>{SWITCH}{body}</body></html>",
        title
    )
}

/// The categories the map's filter offers (the API's names).
pub(crate) const CATEGORIES: &[&str] = &[
    "violence",
    "robbery",
    "theft",
    "shoplifting",
    "vandalism",
    "drugs",
    "disorder",
    "threat",
    "harassment",
    "sexual_offence",
    "weapons",
    "fire",
    "traffic",
    "lighting_fault",
    "dark_area",
    "littering",
    "crowding",
    "other",
];

pub(crate) fn message(text: &str) -> String {
    document(
        "Lägesbild",
        &format!(
            "<p class=\"error\" role=\"alert\">{}</p><p><a href=\"/login\">«Logga in|Sign in»</a></p>",
            escape(text)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_shown_in_one_language_and_outside_text_cannot_switch_it() {
        let template = format!("<p>«Hej|Hello» {}</p>", escape("«evil|x»"));
        assert_eq!(
            localise(&template, Lang::Sv),
            "<p>Hej &laquo;evil&#124;x&raquo;</p>"
        );
        assert_eq!(
            localise(&template, Lang::En),
            "<p>Hello &laquo;evil&#124;x&raquo;</p>"
        );
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            "accept-language",
            "de-DE,en-GB;q=0.8,sv;q=0.5".parse().unwrap(),
        );
        assert_eq!(Lang::of(&headers), Lang::En);
        headers.insert("cookie", "lang=sv".parse().unwrap());
        assert_eq!(Lang::of(&headers), Lang::Sv);
        assert_eq!(Lang::of(&axum::http::HeaderMap::new()), Lang::Sv);
        // Every marker of every page is closed and has both languages.
        for page in [
            login("o", true, Some("https://idp"), "t", Some(("fel", "wrong"))),
            message("m"),
        ] {
            for lang in [Lang::Sv, Lang::En] {
                let shown = localise(&page, lang);
                assert!(!shown.contains('«') && !shown.contains('»'), "{shown}");
            }
        }
    }

    /// WCAG 2.1 relative luminance of `#rrggbb` or `#rgb`.
    fn luminance(hex: &str) -> f64 {
        let hex = hex.trim_start_matches('#');
        let full: String = if hex.len() == 3 {
            hex.chars().flat_map(|c| [c, c]).collect()
        } else {
            hex.to_owned()
        };
        let channel = |i: usize| {
            let c = f64::from(u8::from_str_radix(&full[i..i + 2], 16).unwrap()) / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(2) + 0.0722 * channel(4)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (a, b) = (luminance(a), luminance(b));
        (a.max(b) + 0.05) / (a.min(b) + 0.05)
    }

    /// Every text colour the pages set, on its background, reaches WCAG 2.1
    /// AA for normal text (4.5:1); each pair is read from the style itself.
    #[test]
    fn text_colours_meet_wcag_aa_contrast() {
        assert!(
            (contrast("#000", "#fff") - 21.0).abs() < 0.01,
            "the formula"
        );
        assert!(contrast("#999", "#fff") < 4.5, "a control that fails");
        for (rule, text, background) in [
            ("body{", "#111", "#fff"),
            ("button,a.button{", "#fff", "#0b3d91"),
            ("p.error{", "#8b0000", "#fff"),
        ] {
            let at = STYLE
                .find(rule)
                .unwrap_or_else(|| panic!("no {rule} in the style"));
            let declared = &STYLE[at..STYLE[at..].find('}').unwrap() + at];
            assert!(declared.contains(&format!("color:{text}")), "{declared}");
            let ratio = contrast(text, background);
            assert!(ratio >= 4.5, "{rule} {text} on {background}: {ratio:.2}");
        }
        // The focus outline against the page (non-text: 3:1).
        assert!(STYLE.contains(":focus-visible{outline:3px solid #0b3d91"));
        assert!(contrast("#0b3d91", "#fff") >= 3.0);
    }

    #[test]
    fn every_page_is_wholly_in_one_language_its_title_too() {
        let pages = [
            document("«Logga in|Sign in»", "<p>«Hej|Hello»</p>"),
            document_wide("«Åtkomstlogg|Access log»", ""),
        ];
        for page in pages {
            let english = localise(&page, Lang::En);
            assert!(
                !english.contains('«') && !english.contains("&laquo;"),
                "{english}"
            );
            assert!(
                english.contains("<title>Sign in</title>")
                    || english.contains("<title>Access log</title>"),
                "{english}"
            );
            assert!(localise(&page, Lang::Sv).contains("<html lang=\"sv\">"));
        }
    }

    #[test]
    fn text_from_outside_is_escaped() {
        assert_eq!(
            escape("<script>\"a\" & 'b'</script>"),
            "&lt;script&gt;&quot;a&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        let page = message("<img src=x onerror=alert(1)>");
        assert!(!page.contains("<img"), "{page}");
    }
}
