//! People: the calendar's owner, colleagues and external guests.

use super::rng::Rng;

#[derive(Clone)]
/// A name and an email address.
pub struct Person {
    /// Display name.
    pub name: String,
    /// Email address.
    pub email: String,
}

/// First names.
pub const FIRST: [&str; 24] = [
    "Alice", "Bruno", "Carol", "David", "Priya", "Kenji", "Mariana", "Liam", "Sofia", "Jonas",
    "Amara", "Wei", "Lucas", "Hannah", "Mateo", "Aisha", "Noah", "Chloé", "Ravi", "Yuki", "Elena",
    "Omar", "Ines", "Tomás",
];
/// Last names.
pub const LAST: [&str; 20] = [
    "Fernandes",
    "Keller",
    "Nguyen",
    "Okafor",
    "Sharma",
    "Tanaka",
    "Costa",
    "O'Brien",
    "Rossi",
    "Schmidt",
    "Mensah",
    "Zhang",
    "Martin",
    "Müller",
    "García",
    "Khan",
    "Smith",
    "Dubois",
    "Iyer",
    "Sato",
];

/// A name as an email address part.
pub fn ascii_slug(s: &str) -> String {
    s.chars()
        .filter_map(|c| match c {
            'é' => Some('e'),
            'á' => Some('a'),
            'ü' => Some('u'),
            'í' => Some('i'),
            c if c.is_ascii_alphanumeric() => Some(c.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

/// A random person at `domain`.
pub fn person(rng: &mut Rng, domain: &str) -> Person {
    let f = *rng.pick(&FIRST);
    let l = *rng.pick(&LAST);
    Person {
        name: format!("{f} {l}"),
        email: format!("{}.{}@{domain}", ascii_slug(f), ascii_slug(l)),
    }
}

/// Meeting titles (some non-ASCII).
pub const MEETINGS: [&str; 26] = [
    "Team sync",
    "Sprint planning",
    "Design review",
    "Customer call",
    "Architecture board",
    "Budget review",
    "Hiring debrief",
    "Roadmap review",
    "Incident postmortem",
    "Quarterly business review",
    "Lunch & learn",
    "Security champions",
    "Release go/no-go",
    "Ops review",
    "Interview: backend engineer",
    "Vendor demo",
    "All hands",
    "Platform sync",
    "Pipeline review",
    "Reunião de equipa",
    "Teambesprechung",
    "Réunion d'équipe",
    "朝会",
    "Retro",
    "Backlog grooming",
    "Partner onboarding",
];
