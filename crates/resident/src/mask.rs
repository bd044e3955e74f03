//! Masking of personal data for display: what a screen or a log shows by default.

/// `410***********1234`: the first three and last four characters stay.
pub fn mask_id_number(id: &str) -> String {
    let chars: Vec<char> = id.chars().collect();
    if chars.len() <= 7 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// `张*` for two characters, `张*明` for three or more: the family name and last character stay.
pub fn mask_name(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    match chars.len() {
        0 => String::new(),
        1 => "*".into(),
        2 => format!("{}*", chars[0]),
        n => format!("{}{}{}", chars[0], "*".repeat(n - 2), chars[n - 1]),
    }
}

/// `138****5678`.
pub fn mask_phone(phone: &str) -> String {
    let chars: Vec<char> = phone.chars().collect();
    if chars.len() < 8 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..3].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 7))
}

/// Keeps the first six characters (district level), masks the rest.
pub fn mask_address(address: &str) -> String {
    let chars: Vec<char> = address.chars().collect();
    if chars.len() <= 6 {
        return address.to_string();
    }
    let head: String = chars[..6].iter().collect();
    format!("{head}{}", "*".repeat(4))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(mask_id_number("410105198506151234"), "410***********1234");
        assert_eq!(mask_name("张三"), "张*");
        assert_eq!(mask_name("欧阳明华"), "欧**华");
        assert_eq!(mask_name("李"), "*");
        assert_eq!(mask_phone("13812345678"), "138****5678");
        assert_eq!(mask_address("郑州市金水区花园路1号"), "郑州市金水区****");
        assert_eq!(mask_address("郑州市"), "郑州市");
    }
}
