//! The witnesses section of `/`: who cosigns the log's checkpoints, and how far each has.

use ledger::statement::format_rfc3339_ms;
use maud::{html, Markup};

use super::layout::{fmt_num, time_tag};

/// A witness the log asks for cosignatures (`serve --witness`), as the pages show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessFact {
    /// The witness's name (from its verifier key).
    pub name: String,
    /// The URL prefix the log sends checkpoints to.
    pub url: String,
    /// The largest checkpoint size it cosigned since the server started, and when it signed
    /// (its cosignature's time, Unix seconds); `None` before its first cosignature.
    pub cosigned: Option<(u64, u64)>,
}

/// The section listing the log's witnesses; empty when it has none.
pub(crate) fn section(witnesses: &[WitnessFact]) -> Markup {
    if witnesses.is_empty() {
        return html! {};
    }
    html! {
        h3 #witnesses { "Witnesses" }
        p {
            "Independent witnesses cosign the log's checkpoints, each only after checking that the "
            "checkpoint extends the last one it saw: a log cannot show different histories to "
            "different readers without a witness noticing. Require their cosignatures with "
            code { "grantline verify --witness VKEY" } "."
        }
        div.table-wrap {
            table {
                caption { "Witnesses and the latest checkpoint each cosigned" }
                thead {
                    tr {
                        th scope="col" { "Witness" }
                        th scope="col" { "URL" }
                        th scope="col" { "Latest size cosigned" }
                        th scope="col" { "Cosigned at (UTC)" }
                    }
                }
                tbody {
                    @for w in witnesses {
                        tr {
                            th scope="row" { code { (w.name) } }
                            td { code { (w.url) } }
                            @match w.cosigned {
                                Some((size, time_s)) => {
                                    td { (fmt_num(size)) }
                                    td { (time_tag(&format_rfc3339_ms(seconds_to_ms(time_s)))) }
                                }
                                None => {
                                    td { span.muted { "none yet" } }
                                    td { span.muted { "—" } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn seconds_to_ms(time_s: u64) -> i64 {
    i64::try_from(time_s).unwrap_or(i64::MAX / 1000).saturating_mul(1000)
}
