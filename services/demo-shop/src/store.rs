//! What the shop knows, in memory: the fixed catalogue, signed-in customers' carts, profiles, and the
//! merchant users' offers (three made up on a user's first visit). Lost on restart: it is a demo.

use std::collections::{BTreeMap, HashMap};

/// One product of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct Product {
    pub sku: &'static str,
    pub name: &'static str,
    pub price_cents: u64,
}

/// The storefront's products, in the order pages list them.
pub const CATALOGUE: &[Product] = &[
    Product {
        sku: "espresso-cup",
        name: "Espresso cup",
        price_cents: 450,
    },
    Product {
        sku: "french-press",
        name: "French press",
        price_cents: 2990,
    },
    Product {
        sku: "coffee-grinder",
        name: "Coffee grinder",
        price_cents: 5900,
    },
    Product {
        sku: "travel-mug",
        name: "Travel mug",
        price_cents: 1850,
    },
    Product {
        sku: "barista-apron",
        name: "Barista apron",
        price_cents: 2400,
    },
];

/// The catalogue's product `sku`.
pub fn product(sku: &str) -> Option<&'static Product> {
    CATALOGUE.iter().find(|product| product.sku == sku)
}

/// Most of one product a cart holds.
pub const QUANTITY_MAX: u32 = 99;

/// Products in a cart (by catalogue sku) and their quantities, each 1..=99.
pub type Cart = BTreeMap<&'static str, u32>;

/// Adds `quantity` of `product`; refused (and the cart unchanged) past 99 of one product.
pub fn add_to_cart(
    cart: &mut Cart,
    product: &'static Product,
    quantity: u32,
) -> Result<(), String> {
    let total = cart.get(product.sku).copied().unwrap_or(0) + quantity;
    if total > QUANTITY_MAX {
        return Err(format!(
            "quantity: a cart holds at most {QUANTITY_MAX} of one product"
        ));
    }
    cart.insert(product.sku, total);
    Ok(())
}

/// The lines of `cart` in catalogue order.
pub fn cart_lines(cart: &Cart) -> Vec<(&'static Product, u32)> {
    CATALOGUE
        .iter()
        .filter_map(|product| cart.get(product.sku).map(|quantity| (product, *quantity)))
        .collect()
}

/// A customer's or merchant user's profile as the shop keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Profile {
    pub display_name: String,
    pub phone: String,
}

/// One offer of a merchant user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// Stable within the user's offers: the path segment of its form.
    pub id: &'static str,
    pub product: &'static str,
    pub price_cents: u64,
    pub stock: u32,
}

/// The offers every merchant user starts with.
fn first_offers() -> Vec<Offer> {
    vec![
        Offer {
            id: "espresso-machine",
            product: "Espresso machine",
            price_cents: 24_900,
            stock: 12,
        },
        Offer {
            id: "milk-frother",
            product: "Milk frother",
            price_cents: 3_450,
            stock: 40,
        },
        Offer {
            id: "coffee-beans-1kg",
            product: "Coffee beans 1kg",
            price_cents: 1_899,
            stock: 250,
        },
    ]
}

/// Everything the shop keeps, by principal id.
#[derive(Debug, Default)]
pub struct Store {
    carts: HashMap<String, Cart>,
    profiles: HashMap<String, Profile>,
    offers: HashMap<String, Vec<Offer>>,
}

impl Store {
    /// The cart of a signed-in customer (empty when they have none).
    pub fn cart(&self, principal: &str) -> Cart {
        self.carts.get(principal).cloned().unwrap_or_default()
    }

    /// Replaces a signed-in customer's cart.
    pub fn set_cart(&mut self, principal: &str, cart: Cart) {
        self.carts.insert(principal.to_owned(), cart);
    }

    pub fn profile(&self, principal: &str) -> Profile {
        self.profiles.get(principal).cloned().unwrap_or_default()
    }

    pub fn set_profile(&mut self, principal: &str, profile: Profile) {
        self.profiles.insert(principal.to_owned(), profile);
    }

    /// A merchant user's offers, made up on first sight.
    pub fn offers(&mut self, merchant_user: &str) -> &mut Vec<Offer> {
        self.offers
            .entry(merchant_user.to_owned())
            .or_insert_with(first_offers)
    }

    /// Sets price and stock of one of a merchant user's offers; `false` when they have no such offer.
    pub fn update_offer(
        &mut self,
        merchant_user: &str,
        offer: &str,
        price_cents: u64,
        stock: u32,
    ) -> bool {
        match self
            .offers(merchant_user)
            .iter_mut()
            .find(|candidate| candidate.id == offer)
        {
            Some(found) => {
                found.price_cents = price_cents;
                found.stock = stock;
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cart_holds_at_most_99_of_a_product() {
        let mut cart = Cart::new();
        let cup = product("espresso-cup").unwrap();
        add_to_cart(&mut cart, cup, 60).unwrap();
        assert!(add_to_cart(&mut cart, cup, 40).is_err());
        assert_eq!(cart.get("espresso-cup"), Some(&60));
        add_to_cart(&mut cart, cup, 39).unwrap();
        assert_eq!(cart.get("espresso-cup"), Some(&99));
    }

    #[test]
    fn offers_are_made_once_per_merchant_user_and_kept_apart() {
        let mut store = Store::default();
        assert_eq!(store.offers("mia").len(), 3);
        assert!(store.update_offer("mia", "milk-frother", 100, 1));
        assert!(!store.update_offer("mia", "no-such-offer", 100, 1));
        assert_eq!(store.offers("mia")[1].price_cents, 100);
        assert_eq!(store.offers("max")[1].price_cents, 3_450);
    }
}
