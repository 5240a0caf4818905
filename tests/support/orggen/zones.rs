//! The Windows zones Outlook writes, with their VTIMEZONE blocks, and the
//! zones users live in.

use super::rng::Rng;

/// A Windows zone as Outlook writes it.
pub struct WinZone {
    /// The TZID.
    pub name: &'static str,
    /// The block Outlook writes, one content line per entry.
    pub vtimezone: &'static [&'static str],
}

/// Indices into [`ZONES`].
pub const WEU: usize = 0;
pub const GMT: usize = 1;
pub const PST: usize = 2;
pub const EST: usize = 3;
pub const IST: usize = 4;
pub const TST: usize = 5;

/// Every zone the generator writes.
pub const ZONES: [WinZone; 6] = [
    WinZone {
        name: "W. Europe Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:W. Europe Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011028T030000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
            "TZOFFSETFROM:+0200",
            "TZOFFSETTO:+0100",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010325T020000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0200",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "GMT Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:GMT Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011028T020000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=10",
            "TZOFFSETFROM:+0100",
            "TZOFFSETTO:+0000",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010325T010000",
            "RRULE:FREQ=YEARLY;BYDAY=-1SU;BYMONTH=3",
            "TZOFFSETFROM:+0000",
            "TZOFFSETTO:+0100",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "Pacific Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:Pacific Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011104T020000",
            "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11",
            "TZOFFSETFROM:-0700",
            "TZOFFSETTO:-0800",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010311T020000",
            "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3",
            "TZOFFSETFROM:-0800",
            "TZOFFSETTO:-0700",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "Eastern Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:Eastern Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16011104T020000",
            "RRULE:FREQ=YEARLY;BYDAY=1SU;BYMONTH=11",
            "TZOFFSETFROM:-0400",
            "TZOFFSETTO:-0500",
            "END:STANDARD",
            "BEGIN:DAYLIGHT",
            "DTSTART:16010311T020000",
            "RRULE:FREQ=YEARLY;BYDAY=2SU;BYMONTH=3",
            "TZOFFSETFROM:-0500",
            "TZOFFSETTO:-0400",
            "END:DAYLIGHT",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "India Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:India Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16010101T000000",
            "TZOFFSETFROM:+0530",
            "TZOFFSETTO:+0530",
            "END:STANDARD",
            "END:VTIMEZONE",
        ],
    },
    WinZone {
        name: "Tokyo Standard Time",
        vtimezone: &[
            "BEGIN:VTIMEZONE",
            "TZID:Tokyo Standard Time",
            "BEGIN:STANDARD",
            "DTSTART:16010101T000000",
            "TZOFFSETFROM:+0900",
            "TZOFFSETTO:+0900",
            "END:STANDARD",
            "END:VTIMEZONE",
        ],
    },
];

/// A user's zone (IANA, as user files give it), the Windows zone their own
/// Outlook writes, and a weight.
pub const USER_ZONES: [(&str, usize, u64); 8] = [
    ("Europe/Berlin", WEU, 24),
    ("Europe/Paris", WEU, 8),
    ("Europe/London", GMT, 12),
    ("Europe/Lisbon", GMT, 5),
    ("America/New_York", EST, 18),
    ("America/Los_Angeles", PST, 13),
    ("Asia/Kolkata", IST, 12),
    ("Asia/Tokyo", TST, 8),
];

/// A user's zone (IANA) and their Outlook's Windows zone, by weight.
pub fn pick_user_zone(rng: &mut Rng) -> (&'static str, usize) {
    let total: u64 = USER_ZONES.iter().map(|z| z.2).sum();
    let mut x = rng.next() % total;
    for (iana, win, w) in USER_ZONES {
        if x < w {
            return (iana, win);
        }
        x -= w;
    }
    (USER_ZONES[0].0, USER_ZONES[0].1)
}
