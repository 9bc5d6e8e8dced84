//! Checks of everything a browser sends: form fields and the guest-cart cookie. Each check either
//! answers the value to use or a message naming the field; nothing is stored before all fields pass.

use crate::store::{self, Cart, Product, QUANTITY_MAX};

/// A refused field: the message says which and why.
pub type Checked<T> = Result<T, String>;

/// Name of the cookie a guest's cart lives in.
pub const GUEST_CART_COOKIE: &str = "demo_cart";

const SKU_MAX: usize = 64;
const DISPLAY_NAME_MAX: usize = 100;
const PHONE_MAX: usize = 30;
/// Highest price of an offer, in cents (100000.00).
const PRICE_MAX_CENTS: u64 = 10_000_000;
const STOCK_MAX: u32 = 1_000_000;
/// Longest guest-cart cookie value read; anything longer is garbage.
const GUEST_CART_MAX: usize = 512;

/// A product of the catalogue, by sku.
pub fn sku(value: &str) -> Checked<&'static Product> {
    if value.is_empty() || value.len() > SKU_MAX {
        return Err("sku: must name a product".into());
    }
    store::product(value).ok_or_else(|| "sku: no such product".into())
}

/// A quantity: a whole number from 1 to 99.
pub fn quantity(value: &str) -> Checked<u32> {
    let refused = || format!("quantity: must be a whole number from 1 to {QUANTITY_MAX}");
    let quantity = whole_number(value, 2).ok_or_else(refused)?;
    if (1..=u64::from(QUANTITY_MAX)).contains(&quantity) {
        Ok(quantity as u32)
    } else {
        Err(refused())
    }
}

/// A price such as `12.34`, `12.3` or `12`: from 0.01 to 100000.00, answered in cents.
pub fn price(value: &str) -> Checked<u64> {
    let refused = || "price: must be an amount from 0.01 to 100000.00, such as 12.34".to_owned();
    let (whole, fraction) = value.split_once('.').unwrap_or((value, ""));
    if value.ends_with('.') || fraction.len() > 2 {
        return Err(refused());
    }
    let whole = whole_number(whole, 6).ok_or_else(refused)?;
    let fraction = match fraction.len() {
        0 => 0,
        1 => whole_number(fraction, 1).ok_or_else(refused)? * 10,
        _ => whole_number(fraction, 2).ok_or_else(refused)?,
    };
    let cents = whole * 100 + fraction;
    if (1..=PRICE_MAX_CENTS).contains(&cents) {
        Ok(cents)
    } else {
        Err(refused())
    }
}

/// A stock level: a whole number from 0 to 1000000.
pub fn stock(value: &str) -> Checked<u32> {
    let refused = || format!("stock: must be a whole number from 0 to {STOCK_MAX}");
    let stock = whole_number(value, 7).ok_or_else(refused)?;
    if stock <= u64::from(STOCK_MAX) {
        Ok(stock as u32)
    } else {
        Err(refused())
    }
}

/// A display name: at most 100 characters, no control characters; surrounding blanks dropped.
pub fn display_name(value: &str) -> Checked<String> {
    let value = value.trim();
    if value.chars().count() > DISPLAY_NAME_MAX {
        return Err(format!(
            "displayName: at most {DISPLAY_NAME_MAX} characters"
        ));
    }
    if value.chars().any(char::is_control) {
        return Err("displayName: must not contain control characters".into());
    }
    Ok(value.to_owned())
}

/// A phone number: at most 30 characters of digits, spaces, `+` and `-` (empty for none).
pub fn phone(value: &str) -> Checked<String> {
    let value = value.trim();
    let allowed = |c: char| c.is_ascii_digit() || matches!(c, ' ' | '+' | '-');
    if value.len() > PHONE_MAX || !value.chars().all(allowed) {
        return Err(format!(
            "phone: at most {PHONE_MAX} characters of digits, spaces, + and -"
        ));
    }
    Ok(value.to_owned())
}

/// A whole number of 1 to `digits` ASCII digits (no sign, no blanks).
fn whole_number(value: &str, digits: usize) -> Option<u64> {
    if value.is_empty() || value.len() > digits || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// The guest cart in the request's `demo_cart` cookie: `sku:quantity` entries joined by
/// `|`, each a catalogue product at most once with a quantity of 1 to 99. Anything else (garbage, a
/// tampered or oversized value) is an empty cart.
pub fn guest_cart(headers: &http::HeaderMap) -> Cart {
    match assist_runtime::web::cookie(headers, GUEST_CART_COOKIE) {
        Some(value) if !value.is_empty() && value.len() <= GUEST_CART_MAX => {
            parse_guest_cart(value).unwrap_or_default()
        }
        _ => Cart::new(),
    }
}

fn parse_guest_cart(value: &str) -> Option<Cart> {
    let mut cart = Cart::new();
    for entry in value.split('|') {
        let (sku, quantity) = entry.split_once(':')?;
        let product = self::sku(sku).ok()?;
        let quantity = self::quantity(quantity).ok()?;
        if cart.insert(product.sku, quantity).is_some() {
            return None;
        }
    }
    Some(cart)
}

/// The `Set-Cookie` value that keeps `cart` in the guest's browser (or clears it when empty).
pub fn guest_cart_cookie(cart: &Cart) -> String {
    let attributes = "Path=/; HttpOnly; SameSite=Lax";
    if cart.is_empty() {
        return format!("{GUEST_CART_COOKIE}=; {attributes}; Max-Age=0");
    }
    let value = cart
        .iter()
        .map(|(sku, quantity)| format!("{sku}:{quantity}"))
        .collect::<Vec<_>>()
        .join("|");
    format!("{GUEST_CART_COOKIE}={value}; {attributes}; Max-Age=604800")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_are_1_to_99() {
        assert_eq!(quantity("1"), Ok(1));
        assert_eq!(quantity("99"), Ok(99));
        for bad in [
            "0",
            "100",
            "",
            "-1",
            "+1",
            " 1",
            "1.0",
            "01x",
            "999999999999999999999",
        ] {
            assert!(quantity(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn prices_are_cents_from_one_cent_to_100000() {
        assert_eq!(price("12.34"), Ok(1234));
        assert_eq!(price("12.3"), Ok(1230));
        assert_eq!(price("12"), Ok(1200));
        assert_eq!(price("0.01"), Ok(1));
        assert_eq!(price("100000.00"), Ok(10_000_000));
        for bad in [
            "0",
            "0.00",
            "100000.01",
            "12.345",
            "12.",
            ".5",
            "-1",
            "1e3",
            "",
            "1,00",
            " 1",
            "1.-1",
        ] {
            assert!(price(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn stock_is_0_to_a_million() {
        assert_eq!(stock("0"), Ok(0));
        assert_eq!(stock("1000000"), Ok(1_000_000));
        for bad in ["1000001", "-1", "", "1.5", "abc"] {
            assert!(stock(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn profile_fields_have_limits() {
        assert_eq!(display_name("  Casey  "), Ok("Casey".into()));
        assert!(display_name(&"x".repeat(100)).is_ok());
        assert!(display_name(&"x".repeat(101)).is_err());
        assert!(display_name("a\u{7}b").is_err());
        assert_eq!(phone("+49 30-1234"), Ok("+49 30-1234".into()));
        assert_eq!(phone(""), Ok(String::new()));
        assert!(phone("call me").is_err());
        assert!(phone(&"1".repeat(31)).is_err());
    }

    #[test]
    fn the_guest_cart_round_trips_and_garbage_is_empty() {
        let mut cart = Cart::new();
        cart.insert("espresso-cup", 2);
        cart.insert("travel-mug", 99);
        let set_cookie = guest_cart_cookie(&cart);
        let value = set_cookie.split(';').next().unwrap();
        let with_cookie = |line: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(http::header::COOKIE, line.parse().unwrap());
            headers
        };
        assert_eq!(
            guest_cart(&with_cookie(&format!("a=b; {value}; c=d"))),
            cart
        );
        for garbage in [
            "demo_cart=espresso-cup:0",
            "demo_cart=espresso-cup:100",
            "demo_cart=unknown:1",
            "demo_cart=espresso-cup:1|espresso-cup:2",
            "demo_cart=espresso-cup",
            "demo_cart=espresso-cup:1|",
            "demo_cart=%3Cscript%3E",
        ] {
            assert!(guest_cart(&with_cookie(garbage)).is_empty(), "{garbage}");
        }
        assert!(guest_cart(&http::HeaderMap::new()).is_empty());
        assert!(guest_cart_cookie(&Cart::new()).contains("Max-Age=0"));
    }
}
