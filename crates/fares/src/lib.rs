//! The transit fare engine (票价), pure: what a validator or a gate charges for one ride.
//!
//! - **Bus**: a flat fare per line (a default for lines not listed).
//! - **Metro**: a distance fare from the entry station to the exit station (the complex
//!   purchase of `epurse.md`: the entry record on the card, the fare at the exit). Distance
//!   bands: a base fare for the first kilometres, then one step of money per step of distance,
//!   the steps growing with distance (the usual Chinese metro tariff). An exit without an
//!   entry record, or more than the allowed time after the entry, pays the network's maximum.
//! - **Transfer**: a ride that starts within the window after the previous ride ended, on
//!   another line, gets a discount (at most a number of times in a chain).
//! - **Concessions** by card type: seniors and disabled holders ride free, students pay half
//!   (rounded up to the fen), others the full fare.
//!
//! Order: full fare → transfer discount (not below zero) → concession. Every quote says which
//! rules applied, so a terminal can print it and the platform can re-check it at upload.

use std::collections::BTreeMap;

use chip::CardType;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// A metro distance band: from `from_km` on, every `every_km` kilometres (or part of one)
/// adds `add_fen`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    pub from_km: u32,
    pub every_km: u32,
    pub add_fen: u32,
}

/// One metro line: its stations in order with their distance from the line's first station
/// in metres. Station codes are unique across the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub code: String,
    pub stations: Vec<(String, u32)>,
}

/// Where two lines meet: the same interchange station under each line's code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interchange {
    pub a: String,
    pub b: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metro {
    pub lines: Vec<Line>,
    pub interchanges: Vec<Interchange>,
    /// The fare up to `base_km`.
    pub base_fen: u32,
    pub base_km: u32,
    pub bands: Vec<Band>,
    /// The longest a ride may take from entry to exit, in seconds; past it: the maximum fare.
    pub max_ride_s: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRule {
    /// Seconds after the previous ride within which the next one is a transfer.
    pub window_s: u32,
    pub discount_fen: u32,
    /// Transfers discounted in one chain, at most.
    pub max_in_chain: u8,
}

/// The fare tables a terminal downloads as parameters (issue 6), versioned by the platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FareRules {
    pub bus_default_fen: u32,
    pub bus_lines: BTreeMap<String, u32>,
    pub metro: Metro,
    pub transfer: TransferRule,
}

/// One ride as the terminal sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ride {
    Bus {
        line: String,
        at_s: u32,
    },
    /// At the exit gate: the entry the card recorded (station, time), if any.
    MetroExit {
        entry: Option<(String, u32)>,
        exit: String,
        at_s: u32,
    },
}

/// What the card remembers of the rides before (the transit record the terminal reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Previous {
    /// When the previous ride ended (boarding for a bus, exit for the metro), seconds.
    pub ended_at_s: u32,
    /// Whether the previous ride was on the metro (`true`) or a bus.
    pub metro: bool,
    /// A hash of the previous line (a bus line, or the metro as a whole) to tell "another
    /// line"; 0 for none.
    pub line_tag: u32,
    /// Discounted transfers so far in this chain.
    pub transfers: u8,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quote {
    pub full_fen: u32,
    pub transfer_discount_fen: u32,
    pub concession: &'static str,
    pub charged_fen: u32,
    /// The metro distance in metres, for a metro ride.
    pub distance_m: Option<u32>,
    /// Why the maximum fare applies, if it does.
    pub penalty: Option<&'static str>,
    /// What the card should remember for the next ride.
    pub next: Previous,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FareError {
    #[error("unknown station {0}")]
    UnknownStation(String),
    #[error("no path between {0} and {1} on the network")]
    NoPath(String, String),
    #[error("the fare tables are inconsistent: {0}")]
    Rules(String),
}

/// A small stable tag of a line code (FNV-1a), for [`Previous::line_tag`].
pub fn line_tag(code: &str) -> u32 {
    code.bytes()
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        })
        .max(1)
}

impl Metro {
    fn position(&self, station: &str) -> Option<(usize, u32)> {
        self.lines.iter().enumerate().find_map(|(i, l)| {
            l.stations
                .iter()
                .find(|(s, _)| s == station)
                .map(|(_, m)| (i, *m))
        })
    }

    /// The shortest distance in metres between two stations (Dijkstra over stations, edges
    /// along lines and zero-length interchanges). Networks are small (hundreds of stations).
    pub fn distance_m(&self, from: &str, to: &str) -> Result<u32, FareError> {
        let mut nodes: Vec<&str> = Vec::new();
        for l in &self.lines {
            for (s, _) in &l.stations {
                nodes.push(s);
            }
        }
        let index = |s: &str| nodes.iter().position(|n| *n == s);
        let a = index(from).ok_or_else(|| FareError::UnknownStation(from.into()))?;
        let b = index(to).ok_or_else(|| FareError::UnknownStation(to.into()))?;
        let mut edges: Vec<Vec<(usize, u32)>> = vec![Vec::new(); nodes.len()];
        for l in &self.lines {
            for w in l.stations.windows(2) {
                let (i, j) = (index(&w[0].0).unwrap_or(0), index(&w[1].0).unwrap_or(0));
                let d = w[1].1.abs_diff(w[0].1);
                edges[i].push((j, d));
                edges[j].push((i, d));
            }
        }
        for x in &self.interchanges {
            if let (Some(i), Some(j)) = (index(&x.a), index(&x.b)) {
                edges[i].push((j, 0));
                edges[j].push((i, 0));
            }
        }
        let mut dist = vec![u32::MAX; nodes.len()];
        let mut done = vec![false; nodes.len()];
        dist[a] = 0;
        while let Some(u) = (0..nodes.len())
            .filter(|&k| !done[k] && dist[k] != u32::MAX)
            .min_by_key(|&k| dist[k])
        {
            if u == b {
                return Ok(dist[b]);
            }
            done[u] = true;
            for &(v, w) in &edges[u] {
                let nd = dist[u].saturating_add(w);
                if nd < dist[v] {
                    dist[v] = nd;
                }
            }
        }
        Err(FareError::NoPath(from.into(), to.into()))
    }

    /// The fare of a distance.
    pub fn fare_of(&self, distance_m: u32) -> u32 {
        let km_up = distance_m.div_ceil(1000);
        let mut fare = self.base_fen;
        if km_up <= self.base_km {
            return fare;
        }
        for (k, band) in self.bands.iter().enumerate() {
            let end = self.bands.get(k + 1).map_or(u32::MAX, |n| n.from_km);
            if km_up <= band.from_km {
                break;
            }
            let covered = km_up.min(end) - band.from_km;
            fare += covered.div_ceil(band.every_km.max(1)) * band.add_fen;
        }
        fare
    }

    /// The fare between the two farthest stations: what a ride without a valid entry pays.
    pub fn max_fare(&self) -> Result<u32, FareError> {
        let stations: Vec<&str> = self
            .lines
            .iter()
            .flat_map(|l| l.stations.iter().map(|(s, _)| s.as_str()))
            .collect();
        let mut max = self.base_fen;
        for (i, a) in stations.iter().enumerate() {
            for b in &stations[i + 1..] {
                if let Ok(d) = self.distance_m(a, b) {
                    max = max.max(self.fare_of(d));
                }
            }
        }
        Ok(max)
    }
}

impl FareRules {
    /// Checks the tables once, when they are loaded.
    pub fn validate(&self) -> Result<(), FareError> {
        let mut seen = std::collections::HashSet::new();
        for l in &self.metro.lines {
            if l.stations.windows(2).any(|w| w[1].1 <= w[0].1) {
                return Err(FareError::Rules(format!(
                    "line {}: station distances must increase",
                    l.code
                )));
            }
            for (s, _) in &l.stations {
                if !seen.insert(s.as_str()) {
                    return Err(FareError::Rules(format!("station {s} appears twice")));
                }
            }
        }
        if self
            .metro
            .bands
            .windows(2)
            .any(|w| w[1].from_km <= w[0].from_km)
            || self
                .metro
                .bands
                .first()
                .is_some_and(|b| b.from_km < self.metro.base_km)
        {
            return Err(FareError::Rules(
                "distance bands must follow the base".into(),
            ));
        }
        Ok(())
    }

    /// The fare of `ride` for a card of `card_type` after `previous`.
    pub fn quote(
        &self,
        card_type: CardType,
        ride: &Ride,
        previous: Option<Previous>,
    ) -> Result<Quote, FareError> {
        let (full, distance_m, penalty, start_s, end_s, metro, tag) = match ride {
            Ride::Bus { line, at_s } => (
                *self.bus_lines.get(line).unwrap_or(&self.bus_default_fen),
                None,
                None,
                *at_s,
                *at_s,
                false,
                line_tag(line),
            ),
            Ride::MetroExit { entry, exit, at_s } => {
                let m = &self.metro;
                m.position(exit)
                    .ok_or_else(|| FareError::UnknownStation(exit.clone()))?;
                match entry {
                    Some((station, entered)) if at_s.saturating_sub(*entered) <= m.max_ride_s => {
                        let d = m.distance_m(station, exit)?;
                        (
                            m.fare_of(d),
                            Some(d),
                            None,
                            *entered,
                            *at_s,
                            true,
                            line_tag("metro"),
                        )
                    }
                    Some((_, entered)) => (
                        m.max_fare()?,
                        None,
                        Some("over the time allowed in the network"),
                        *entered,
                        *at_s,
                        true,
                        line_tag("metro"),
                    ),
                    None => (
                        m.max_fare()?,
                        None,
                        Some("no entry record on the card"),
                        *at_s,
                        *at_s,
                        true,
                        line_tag("metro"),
                    ),
                }
            }
        };
        let t = &self.transfer;
        let (discount, transfers) = match previous {
            Some(p)
                if penalty.is_none()
                    && p.line_tag != tag
                    && start_s >= p.ended_at_s
                    && start_s - p.ended_at_s <= t.window_s
                    && p.transfers < t.max_in_chain =>
            {
                (t.discount_fen.min(full), p.transfers + 1)
            }
            _ => (0, 0),
        };
        let after_transfer = full - discount;
        let (concession, charged) = match card_type {
            CardType::Senior => ("senior_free", 0),
            CardType::Disabled => ("disabled_free", 0),
            CardType::Student => ("student_half", after_transfer.div_ceil(2)),
            _ => ("none", after_transfer),
        };
        Ok(Quote {
            full_fen: full,
            transfer_discount_fen: discount,
            concession,
            charged_fen: charged,
            distance_m,
            penalty,
            next: Previous {
                ended_at_s: end_s,
                metro,
                line_tag: tag,
                transfers,
            },
        })
    }
}

/// The city's default tables (Zhengzhou-like): bus 1 yuan (air-conditioned lines 2), metro
/// 2 yuan for 4 km, +1 yuan per 4 km to 12 km, per 6 km to 24 km, per 8 km beyond; transfers
/// within 90 minutes 1 yuan off, twice per chain. A demo network of two lines.
pub fn default_rules() -> FareRules {
    let line = |code: &str, stations: &[(&str, u32)]| Line {
        code: code.into(),
        stations: stations.iter().map(|(s, m)| ((*s).into(), *m)).collect(),
    };
    FareRules {
        bus_default_fen: 100,
        bus_lines: [("B2".to_string(), 200), ("B906".to_string(), 200)]
            .into_iter()
            .collect(),
        metro: Metro {
            lines: vec![
                line(
                    "M1",
                    &[
                        ("M1-01", 0),
                        ("M1-02", 1_500),
                        ("M1-03", 3_900),
                        ("M1-04", 6_200),
                        ("M1-05", 9_000),
                        ("M1-06", 13_500),
                        ("M1-07", 20_000),
                        ("M1-08", 31_000),
                    ],
                ),
                line(
                    "M2",
                    &[
                        ("M2-01", 0),
                        ("M2-02", 2_000),
                        ("M2-03", 5_000),
                        ("M2-04", 8_500),
                    ],
                ),
            ],
            interchanges: vec![Interchange {
                a: "M1-04".into(),
                b: "M2-02".into(),
            }],
            base_fen: 200,
            base_km: 4,
            bands: vec![
                Band {
                    from_km: 4,
                    every_km: 4,
                    add_fen: 100,
                },
                Band {
                    from_km: 12,
                    every_km: 6,
                    add_fen: 100,
                },
                Band {
                    from_km: 24,
                    every_km: 8,
                    add_fen: 100,
                },
            ],
            max_ride_s: 4 * 3600,
        },
        transfer: TransferRule {
            window_s: 90 * 60,
            discount_fen: 100,
            max_in_chain: 2,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(entry: Option<(&str, u32)>, at: &str, at_s: u32) -> Ride {
        Ride::MetroExit {
            entry: entry.map(|(s, t)| (s.to_string(), t)),
            exit: at.into(),
            at_s,
        }
    }

    #[test]
    fn metro_distance_bands() {
        let r = default_rules();
        r.validate().unwrap();
        let m = &r.metro;
        // 0–4 km: 2 yuan; 4–12: +1 per 4 km; 12–24: +1 per 6 km; beyond: +1 per 8 km.
        for (m_, fen) in [
            (1, 200),
            (4_000, 200),
            (4_001, 300),
            (8_000, 300),
            (8_001, 400),
            (12_000, 400),
            (12_001, 500),
            (18_000, 500),
            (24_000, 600),
            (24_001, 700),
            (32_000, 700),
            (32_001, 800),
        ] {
            assert_eq!(m.fare_of(m_), fen, "{m_} m");
        }
        // Along a line, and across the interchange M1-04 = M2-02.
        assert_eq!(m.distance_m("M1-01", "M1-05").unwrap(), 9_000);
        assert_eq!(m.distance_m("M1-05", "M1-01").unwrap(), 9_000);
        assert_eq!(m.distance_m("M1-01", "M2-04").unwrap(), 6_200 + 6_500);
        assert_eq!(m.max_fare().unwrap(), m.fare_of(31_000));
        assert!(matches!(
            m.distance_m("M1-01", "X"),
            Err(FareError::UnknownStation(_))
        ));
    }

    #[test]
    fn complex_purchase_transfers_and_concessions() {
        let r = default_rules();
        // Entry M1-01 at t, exit M1-05 30 minutes later: 9 km → 4 yuan.
        let q = r
            .quote(
                CardType::Ordinary,
                &exit(Some(("M1-01", 1_000)), "M1-05", 2_800),
                None,
            )
            .unwrap();
        assert_eq!(
            (q.full_fen, q.charged_fen, q.distance_m),
            (400, 400, Some(9_000))
        );
        // Then a bus within 90 minutes: 1 yuan off the 1 yuan fare; a student pays half.
        let bus = Ride::Bus {
            line: "B66".into(),
            at_s: 2_800 + 600,
        };
        let q2 = r.quote(CardType::Ordinary, &bus, Some(q.next)).unwrap();
        assert_eq!(
            (q2.full_fen, q2.transfer_discount_fen, q2.charged_fen),
            (100, 100, 0)
        );
        let q3 = r
            .quote(
                CardType::Student,
                &Ride::Bus {
                    line: "B2".into(),
                    at_s: 3_500,
                },
                Some(q2.next),
            )
            .unwrap();
        assert_eq!(
            (q3.full_fen, q3.transfer_discount_fen, q3.charged_fen),
            (200, 100, 50)
        );
        // A third transfer in the chain is not discounted; nor a ride after the window, nor
        // the same line again.
        let q4 = r
            .quote(
                CardType::Ordinary,
                &Ride::Bus {
                    line: "B66".into(),
                    at_s: 3_600,
                },
                Some(q3.next),
            )
            .unwrap();
        assert_eq!(q4.transfer_discount_fen, 0);
        let late_bus = Ride::Bus {
            line: "B66".into(),
            at_s: 2_800 + 90 * 60 + 1,
        };
        let q5 = r
            .quote(CardType::Ordinary, &late_bus, Some(q.next))
            .unwrap();
        assert_eq!(q5.transfer_discount_fen, 0);
        let same = r
            .quote(
                CardType::Ordinary,
                &Ride::Bus {
                    line: "B66".into(),
                    at_s: 3_500,
                },
                Some(q2.next),
            )
            .unwrap();
        assert_eq!(
            same.transfer_discount_fen, 0,
            "the same bus line is not a transfer"
        );
        // Seniors and disabled holders ride free; the quote says why.
        let s = r
            .quote(
                CardType::Senior,
                &exit(Some(("M1-01", 0)), "M1-08", 100),
                None,
            )
            .unwrap();
        assert_eq!(
            (s.full_fen, s.charged_fen, s.concession),
            (700, 0, "senior_free")
        );
    }

    #[test]
    fn missing_or_stale_entries_pay_the_maximum() {
        let r = default_rules();
        let max = r.metro.max_fare().unwrap();
        let q = r
            .quote(CardType::Ordinary, &exit(None, "M1-02", 10), None)
            .unwrap();
        assert_eq!(
            (q.charged_fen, q.penalty),
            (max, Some("no entry record on the card"))
        );
        let q = r
            .quote(
                CardType::Ordinary,
                &exit(Some(("M1-01", 0)), "M1-02", 5 * 3600),
                None,
            )
            .unwrap();
        assert_eq!(q.charged_fen, max);
        assert!(q.penalty.is_some());
        assert!(
            r.quote(CardType::Ordinary, &exit(None, "nowhere", 1), None)
                .is_err()
        );
    }

    #[test]
    fn bad_tables_are_refused_and_tables_travel_as_json() {
        let mut r = default_rules();
        r.metro.lines[0].stations[2].1 = 100;
        assert!(r.validate().is_err());
        let json = serde_json::to_string(&default_rules()).unwrap();
        let back: FareRules = serde_json::from_str(&json).unwrap();
        assert_eq!(back, default_rules());
    }
}
