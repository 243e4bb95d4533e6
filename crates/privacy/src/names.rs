//! People's names in free text that the report did not list.
//!
//! Words are looked up in name statistics kept as data (`data/first-names.txt`,
//! `data/surnames.txt`; see `data/SOURCE.md`): the 500 most common first names
//! of each sex and the 500 most common surnames in Sweden, which include the
//! names common in Swedish cities today. On top of the lists: any capitalised
//! word ending in `-sson`, any capitalised word after a title or role
//! ("väktaren Lindqvist"), and unknown capitalised words next to a name
//! ("Zlatan Andersson").
//!
//! Names that are also ordinary words (Hans, Bo, Dag, Berg, Ek, Strand, ...)
//! count only next to another name or after a title, so "Hans bil" and "Berg
//! och dal" stay. A run of names followed by a street or place word (`Olof
//! Palmes gata`, `Gustav Adolfs torg`, `Karl XII:s torg`, `Birger Jarlsgatan`)
//! is a place, and places of the coverage area are not personal data.

use crate::scrub::Removal;
use std::collections::HashSet;
use std::sync::LazyLock;

const FIRST_NAMES: &str = include_str!("../data/first-names.txt");
const SURNAMES: &str = include_str!("../data/surnames.txt");

/// Every listed name, lower case.
static NAMES: LazyLock<HashSet<String>> = LazyLock::new(|| {
    FIRST_NAMES
        .lines()
        .chain(SURNAMES.lines())
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_lowercase)
        .collect()
});

/// Listed names that are also ordinary Swedish words (or words of Swedish
/// texts): a name only next to another name or after a title.
const AMBIGUOUS: &[&str] = &[
    "alm", "asp", "ben", "berg", "björk", "björn", "blixt", "blom", "bo", "borg", "brink", "bror",
    "bäck", "dag", "dahl", "dan", "del", "ek", "falk", "ferm", "flink", "fors", "frank", "frid",
    "frisk", "green", "gren", "hall", "hammar", "hans", "hjort", "holm", "hult", "hägg", "inga",
    "inge", "iris", "jarl", "juni", "kaj", "karl", "klara", "kling", "kvist", "lilja", "lina",
    "lind", "linde", "liv", "ljung", "lo", "love", "lova", "lund", "löf", "maj", "malm", "mark",
    "max", "mina", "modig", "my", "nord", "nova", "palm", "per", "rask", "rosa", "rose", "roos",
    "rut", "said", "saga", "skog", "sköld", "stark", "sten", "stig", "storm", "strand", "strid",
    "ström", "svea", "svärd", "tage", "thor", "tom", "tor", "urban", "vide", "ville", "viola",
    "wall", "åke", "åsa",
];

/// Words after which a capitalised word is a person's name.
const TITLES: &[&str] = &[
    "väktaren",
    "väktare",
    "vakten",
    "ordningsvakten",
    "ordningsvakt",
    "polisen",
    "polis",
    "polisinspektör",
    "inspektör",
    "inspektören",
    "kommissarie",
    "kommissarien",
    "herr",
    "fru",
    "fröken",
    "doktor",
    "dr",
    "läkaren",
    "konduktören",
    "chefen",
    "butikschefen",
    "föreståndaren",
    "receptionisten",
    "portieren",
    "kollegan",
    "grannen",
    "sonen",
    "dottern",
    "mamman",
    "pappan",
    "brodern",
    "systern",
    "hyresgästen",
    "kunden",
    "gästen",
    "vittnet",
    "målsägande",
    "målsäganden",
    "misstänkte",
    "anmälaren",
    "ägaren",
    "expediten",
    "kassören",
    "kassörskan",
    "kontaktperson",
    "kontaktpersonen",
    "personalen",
    "eleven",
    "läraren",
];

/// Words that make the names before them a place.
/// Endings that make a capitalised word a Swedish surname even when the lists
/// do not hold it (Zetterqvist, Wahlström, Sandgren): none of them ends an
/// ordinary word or a place name of the coverage area.
const SURNAME_ENDINGS: &[&str] = &[
    "qvist", "kvist", "quist", "ström", "gren", "blad", "stedt", "sköld", "feldt",
];

const PLACE_WORDS: &[&str] = &[
    "gata",
    "gatan",
    "väg",
    "vägen",
    "torg",
    "torget",
    "plan",
    "gränd",
    "gränden",
    "backe",
    "backen",
    "park",
    "parken",
    "plats",
    "platsen",
    "kyrka",
    "kyrkan",
    "skola",
    "skolan",
    "bro",
    "bron",
    "hus",
    "huset",
    "hall",
    "hallen",
    "stig",
    "stigen",
    "allé",
    "allén",
    "kaj",
    "kajen",
    "strand",
    "stranden",
    "trappa",
    "trappan",
    "passage",
    "passagen",
    "hotell",
    "hotel",
    "galleria",
    "gallerian",
    "center",
    "centrum",
    "station",
    "stationen",
    "sjukhus",
    "sjukhuset",
];

/// Endings that make a word itself a place (`Jarlsgatan`, `Karlavägen`).
const PLACE_ENDINGS: &[&str] = &[
    "gatan",
    "vägen",
    "torget",
    "torg",
    "plan",
    "gränd",
    "gränden",
    "backen",
    "parken",
    "platsen",
    "kyrkan",
    "skolan",
    "bron",
    "huset",
    "hallen",
    "stigen",
    "allén",
    "kajen",
    "stranden",
    "trappan",
    "passagen",
    "gallerian",
    "holmen",
    "malm",
    "staden",
    "viken",
];

/// One word of the text, by its byte range.
#[derive(Debug, Clone, Copy)]
struct Word {
    start: usize,
    end: usize,
    /// First word of a sentence (capitalised for that reason alone, perhaps).
    sentence_start: bool,
    /// Only spaces stand between it and the word before.
    joined: bool,
}

fn words(text: &str) -> Vec<Word> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut i = 0;
    let mut sentence_start = true;
    let mut joined = false;
    while i < chars.len() {
        let (at, c) = chars[i];
        if c.is_alphabetic() {
            let start = at;
            let mut j = i + 1;
            while j < chars.len() {
                let c = chars[j].1;
                let inner = matches!(c, '-' | ':' | '\'' | '’')
                    && chars.get(j + 1).is_some_and(|(_, n)| n.is_alphanumeric());
                if c.is_alphanumeric() || inner {
                    j += 1;
                } else {
                    break;
                }
            }
            let end = chars.get(j).map_or(text.len(), |(at, _)| *at);
            // A placeholder's word ("[namn]") is no word of the text.
            let placeholder = start > 0 && text[..start].ends_with('[');
            if !placeholder {
                out.push(Word {
                    start,
                    end,
                    sentence_start,
                    joined,
                });
            }
            sentence_start = false;
            joined = true;
            i = j;
            continue;
        }
        match c {
            '.' | '!' | '?' | '\n' | ':' | ';' | '"' | '(' => {
                sentence_start = matches!(c, '.' | '!' | '?' | '\n' | '"' | ':');
                joined = false;
            }
            ' ' | '\t' => {}
            _ => joined = false,
        }
        i += 1;
    }
    out
}

fn capitalised(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(char::is_uppercase) && chars.any(char::is_lowercase)
}

/// How much a capitalised word looks like a name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Looks {
    /// Not a known name.
    Unknown,
    /// A listed name that is also an ordinary word.
    Ambiguous,
    /// A listed name, or a `-sson` surname.
    Name,
}

/// A lower-case word and the stems it has if it is a genitive
/// (`Annas`, `Lindqvist:s`, `Jones's`).
fn stems(lower: &str) -> impl Iterator<Item = &str> {
    [
        Some(lower),
        lower.strip_suffix(":s"),
        lower.strip_suffix("'s"),
        lower.strip_suffix('s'),
    ]
    .into_iter()
    .flatten()
}

fn looks(word: &str) -> Looks {
    let lower = word.to_lowercase();
    let mut best = Looks::Unknown;
    for stem in stems(&lower) {
        // Hyphenated names (Anna-Karin) are names if every part is.
        let parts: Vec<&str> = stem.split('-').collect();
        let all_listed = parts.iter().all(|p| NAMES.contains(*p));
        let found = if all_listed {
            if parts.len() == 1 && AMBIGUOUS.contains(&stem) {
                Looks::Ambiguous
            } else {
                Looks::Name
            }
        } else if parts.len() == 1
            && stem.chars().count() >= 7
            && (stem.ends_with("sson") || SURNAME_ENDINGS.iter().any(|e| stem.ends_with(e)))
        {
            Looks::Name
        } else {
            Looks::Unknown
        };
        best = best.max(found);
    }
    best
}

fn is_place(word: &str) -> bool {
    let lower = word.to_lowercase();
    PLACE_WORDS.contains(&lower.as_str())
        || PLACE_ENDINGS
            .iter()
            .any(|e| lower.len() > e.len() && lower.ends_with(e))
}

fn roman_numeral(word: &str) -> bool {
    let bare = word.strip_suffix(":s").unwrap_or(word);
    !bare.is_empty() && bare.chars().all(|c| matches!(c, 'I' | 'V' | 'X'))
}

/// The lower-case words of the names a report lists: each whole name's words
/// and its hyphenated parts, of two letters or more.
pub(crate) fn known_words(names: &[&str]) -> HashSet<String> {
    let mut words = HashSet::new();
    for name in names {
        for word in name.split_whitespace() {
            for part in std::iter::once(word).chain(word.split('-')) {
                let part = part.trim_matches(|c: char| !c.is_alphanumeric());
                if part.chars().count() >= 2 {
                    words.insert(part.to_lowercase());
                }
            }
        }
    }
    words
}

/// `text` with every word of `known` (any case, in the genitive too) replaced
/// by `[namn]`; adjacent ones, a whole name, by one placeholder. What it
/// replaced is added to `found`.
pub(crate) fn replace_known_words_into(
    text: &str,
    known: &HashSet<String>,
    found: &mut Vec<Removal>,
) -> String {
    if known.is_empty() {
        return text.to_owned();
    }
    let is_known = |word: &str| {
        let lower = word.to_lowercase();
        let found = stems(&lower)
            .any(|stem| known.contains(stem) || stem.split('-').all(|p| known.contains(p)));
        found
    };
    let words = words(text);
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut previous_matched = false;
    for w in &words {
        if is_known(&text[w.start..w.end]) {
            match spans.last_mut() {
                Some(last) if previous_matched && w.joined => last.1 = w.end,
                _ => spans.push((w.start, w.end)),
            }
            previous_matched = true;
        } else {
            previous_matched = false;
        }
    }
    splice_names(text, &spans, "a name of the report's own persons", found)
}

fn splice_names(
    text: &str,
    spans: &[(usize, usize)],
    rule: &'static str,
    found: &mut Vec<Removal>,
) -> String {
    if spans.is_empty() {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for &(start, end) in spans {
        out.push_str(&text[at..start]);
        out.push_str("[namn]");
        found.push(Removal {
            rule,
            placeholder: "[namn]",
            text: text[start..end].to_owned(),
        });
        at = end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` with people's names it finds replaced by `[namn]`.
#[cfg(test)]
fn replace_free_names(text: &str) -> String {
    replace_free_names_into(text, &mut Vec::new())
}

/// As [`replace_free_names`], adding what it replaced to `found`.
pub(crate) fn replace_free_names_into(text: &str, found: &mut Vec<Removal>) -> String {
    let words = words(text);
    let word = |w: &Word| &text[w.start..w.end];
    let mut spans: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    // Words before this index are decided.
    let mut done = 0;
    while i < words.len() {
        let first = word(&words[i]);
        let after_title = i > 0
            && words[i].joined
            && TITLES.contains(&word(&words[i - 1]).to_lowercase().as_str());
        if !capitalised(first) || (looks(first) == Looks::Unknown && !after_title) {
            i += 1;
            continue;
        }
        // The run: this word and the capitalised words right after it.
        let mut end = i + 1;
        while end < words.len()
            && words[end].joined
            && !words[end].sentence_start
            && capitalised(word(&words[end]))
            && !is_place(word(&words[end]))
        {
            end += 1;
        }
        let run: Vec<Looks> = (i..end).map(|k| looks(word(&words[k]))).collect();
        let named = run.contains(&Looks::Name)
            || (run.len() >= 2 && run.iter().any(|l| *l != Looks::Unknown))
            || after_title;
        // An unknown first word at a sentence's start is just a capital letter.
        let mut from = i;
        if words[i].sentence_start && run[0] == Looks::Unknown && !after_title {
            from += 1;
        }
        // Unknown capitalised words just before a name belong to it
        // ("Zlatan Andersson"), unless they open the sentence.
        let opened_here = from == i;
        while named
            && opened_here
            && from > done
            && words[from].joined
            && !words[from - 1].sentence_start
            && capitalised(word(&words[from - 1]))
            && !is_place(word(&words[from - 1]))
        {
            from -= 1;
        }
        // What follows decides whether the run names a place.
        let mut next = end;
        if next < words.len() && words[next].joined && roman_numeral(word(&words[next])) {
            next += 1;
        }
        let place = is_place(word(&words[end - 1]))
            || (next < words.len() && words[next].joined && is_place(word(&words[next])));
        if named && !place && from < end {
            spans.push((words[from].start, words[end - 1].end));
        }
        i = end;
        done = end;
    }
    splice_names(text, &spans, "a person's name", found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_alone_in_pairs_after_titles_and_in_the_genitive() {
        for (input, expected) in [
            (
                "Johan Andersson och Anna Karlsson bråkade i lobbyn.",
                "[namn] och [namn] bråkade i lobbyn.",
            ),
            ("väktaren Lindqvist ingrep", "väktaren [namn] ingrep"),
            ("väktaren Zetterqvist ingrep", "väktaren [namn] ingrep"),
            ("Annas väska stals.", "[namn] väska stals."),
            ("Lindqvists vän sprang.", "[namn] vän sprang."),
            ("Sedan kom Mohammed Ali fram.", "Sedan kom [namn] fram."),
            ("Anna-Karin ringde.", "[namn] ringde."),
            ("Igår slog Zlatan Andersson till.", "Igår slog [namn] till."),
            ("Hans Berg blev slagen.", "[namn] blev slagen."),
        ] {
            assert_eq!(replace_free_names(input), expected, "{input}");
        }
    }

    #[test]
    fn places_and_ordinary_words_stay() {
        for input in [
            "Bråk på Birger Jarlsgatan.",
            "Vid Gustav Adolfs torg.",
            "Vid Olof Palmes gata 9.",
            "Vid Karl XII:s torg.",
            "Mäster Samuelsgatan är mörk.",
            "Hans bil stod vid Stureplan.",
            "Berg och dal, strand och skog.",
            "Inga skador. Per person två biljetter.",
            "Mörk passage mellan Hötorget och Sveavägen.",
            "Polisen kom till Sergels torg kl 22.",
            "Person i grön jacka sprang mot T-Centralen.",
        ] {
            assert_eq!(replace_free_names(input), input);
        }
    }

    /// Places of Stockholm whose names hold people's names, and the named
    /// places of the coverage area.
    const PLACES: &[&str] = &[
        "Birger Jarlsgatan",
        "Gustav Adolfs torg",
        "Olof Palmes gata",
        "Karl XII:s torg",
        "Mäster Samuelsgatan",
        "Sankt Eriksgatan",
        "Karlavägen",
        "Sveavägen",
        "Jakobs kyrka",
        "Johannes kyrka",
        "Adolf Fredriks kyrka",
        "Oscars kyrka",
        "Engelbrektsgatan",
        "Kungsholmen",
        "Norrmalm",
        "Östermalm",
        "Sergelgatan",
        "Vasaparken",
        "Humlegården",
        "Jarlaplan",
        "Odenplan",
        "Fridhemsplan",
        "Mariatorget",
        "Medborgarplatsen",
        "Nytorget",
        "Gustav Vasa kyrka",
        "Hedvig Eleonora kyrka",
        "Karolinska sjukhuset",
        "Sankt Göransgatan",
        "David Bagares gata",
        "Jakob Westinsgatan",
        "Tegnérgatan",
        "Olofsgatan",
        "Döbelnsgatan",
        "Johannesgatan",
        "Kammakargatan",
    ];

    const COVERAGE: &str = include_str!("../../reports/data/places-norrmalm.csv");

    /// Sentences of the kind reports hold, with no person in them.
    const ORDINARY: &[&str] = &[
        "Bråk utanför entrén vid stängning.",
        "Belysning ur funktion i gångpassage.",
        "Trappbelysning släckt sedan flera dagar.",
        "Medborgare upplever platsen som mörk och otrygg.",
        "Nedskräpning runt papperskorgar.",
        "Trängsel vid evenemang.",
        "Sprutor hittade i trapphus.",
        "Skyltfönster sprayat under natten.",
        "Gäst ofredad utanför hotellet.",
        "Kniv påträffad vid kroppsvisitation.",
        "Två personer greps efter misshandel.",
        "Hans bil stod parkerad i lastzonen.",
        "Per person räknades två biljetter.",
        "Inga skador rapporterades.",
        "Berg av skräp vid containern.",
        "Stark lukt av rök i trapphuset.",
        "Storm och regn, lampor släckta.",
        "Dag och natt samma problem.",
        "Snatteri i butik, varor för 400 kr.",
        "Vakten larmade polisen kl 23.40.",
        "Polisen grep en man i 30-årsåldern.",
        "Ordningsvakt avvisade berusad gäst.",
        "Larm om rån i växlingskontor.",
        "Bo i närheten? Ring 112 vid fara.",
        "Ek och björk har fällts i parken.",
        "Mark och asfalt skadade efter brand.",
        "Tom flaska kastades mot fönstret.",
        "Frank attityd från personalen uppskattades.",
        "Maj och juni är lugnare månader.",
        "Liv och hälsa gick före egendom.",
    ];

    /// A small deterministic generator, so the corpus is the same every run.
    fn pick<'a>(state: &mut u64, from: &[&'a str]) -> &'a str {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        from[((*state >> 33) as usize) % from.len()]
    }

    /// Recall on people's names in running text, and what share of ordinary
    /// sentences and place names is changed, over a generated corpus.
    #[test]
    fn recall_on_names_and_ordinary_text_changed() {
        let first: Vec<&str> = FIRST_NAMES.lines().filter(|l| !l.is_empty()).collect();
        let last: Vec<&str> = SURNAMES.lines().filter(|l| !l.is_empty()).collect();
        let frames = [
            "{F} {S} bråkade i lobbyn.",
            "väktaren {S} ingrep direkt.",
            "Enligt {F} {S} var dörren öppen.",
            "{F}s väska stals vid entrén.",
            "{S} ringde till receptionen.",
            "Gästen {F} {S} ofredades.",
            "{F} och {G} sågs vid kassan.",
            "Anmälaren {F} hörde skrik.",
            "Sedan kom {F} {S} och {G} {T} ut.",
        ];
        let mut state = 7;
        let (mut names, mut found) = (0usize, 0usize);
        for _ in 0..4_000 {
            let frame = pick(&mut state, &frames);
            let (f, g) = (pick(&mut state, &first), pick(&mut state, &first));
            let (s, t) = (pick(&mut state, &last), pick(&mut state, &last));
            let text = frame
                .replace("{F}", f)
                .replace("{G}", g)
                .replace("{S}", s)
                .replace("{T}", t);
            let out = replace_free_names(&text);
            for (key, name) in [("{F}", f), ("{G}", g), ("{S}", s), ("{T}", t)] {
                if frame.contains(key) {
                    names += 1;
                    // Caught if no word of the output is the name.
                    let kept = out
                        .split(|c: char| !c.is_alphanumeric() && c != '-')
                        .any(|w| w == name || w.strip_suffix('s') == Some(name));
                    found += usize::from(!kept);
                }
            }
        }
        let recall = found as f64 / names as f64;
        println!(
            "names: {found} of {names} caught, recall {:.2} %",
            recall * 100.0
        );
        assert!(recall >= 0.95, "recall {recall}");

        let places = PLACES.iter().copied().chain(
            COVERAGE
                .lines()
                .filter(|l| !l.starts_with('#') && !l.starts_with("name,"))
                .filter_map(|l| l.split(',').next()),
        );
        let mut sentences: Vec<String> = ORDINARY.iter().map(|s| s.to_string()).collect();
        for place in places {
            sentences.push(format!("Bråk vid {place} kl 22."));
            sentences.push(format!("{place} är mörk efter 22."));
            sentences.push(format!("Mellan {place} och entrén saknas belysning."));
        }
        let changed: Vec<&String> = sentences
            .iter()
            .filter(|s| replace_free_names(s) != **s)
            .collect();
        let share = changed.len() as f64 / sentences.len() as f64;
        println!(
            "ordinary sentences: {} of {} changed ({:.2} %): {changed:?}",
            changed.len(),
            sentences.len(),
            share * 100.0
        );
        assert!(share <= 0.02, "{changed:#?}");
    }

    /// Recall on surnames the lists do not hold, built from common Swedish
    /// surname parts.
    #[test]
    fn recall_on_unlisted_surnames() {
        let heads = [
            "Zetter", "Wahl", "Lind", "Sund", "Hag", "Eng", "Holm", "Sand", "Öst", "Blom", "Rosen",
            "Lil", "Hell", "Wester", "Norr", "Berg", "Fager", "Ljung", "Sjö", "Tall", "Ask",
            "Gyllen",
        ];
        let tails = [
            "qvist", "kvist", "ström", "gren", "blad", "stedt", "sköld", "feldt", "quist",
        ];
        let frames = [
            "väktaren {S} ingrep.",
            "{S} ringde till receptionen.",
            "Enligt {S} var dörren öppen.",
            "Anna {S} ofredades.",
            "Sedan kom {S}s kollega.",
        ];
        let (mut names, mut found) = (0, 0);
        for head in heads {
            for tail in tails {
                let surname = format!("{head}{tail}");
                if NAMES.contains(&surname.to_lowercase()) {
                    continue;
                }
                for frame in frames {
                    let text = frame.replace("{S}", &surname);
                    names += 1;
                    found += usize::from(!replace_free_names(&text).contains(&surname));
                }
            }
        }
        let recall = found as f64 / names as f64;
        println!("unlisted surnames: {found} of {names} caught");
        assert!(names > 500 && recall >= 0.95, "recall {recall}");
    }

    #[test]
    fn placeholders_are_not_words() {
        assert_eq!(
            replace_free_names("[namn] och [namn]."),
            "[namn] och [namn]."
        );
    }
}
