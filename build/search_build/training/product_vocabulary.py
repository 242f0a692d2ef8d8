"""The vocabularies the product-search data is generated from: query slots and intent templates, product types
with their attributes and features, invented brands and product lines, listing templates and boilerplate.

SYNTHETIC and hand-written by this project (brand names are invented); ``product_data`` draws from these tables
with a seeded random generator. Order matters: the generated data depends on it.
"""
from __future__ import annotations

from dataclasses import dataclass

SLOTS: dict[str, list[str]] = {
    "artist": ["taylor swift", "drake", "adele", "the beatles", "beyonce", "ed sheeran", "coldplay", "billie eilish",
               "kendrick lamar", "miles davis", "dua lipa", "bad bunny", "metallica", "norah jones", "the weeknd",
               "bruno mars", "shakira", "radiohead", "lizzo", "frank sinatra", "olivia rodrigo", "bts", "queen",
               "johnny cash"],
    "song": ["shake it off", "hello", "bohemian rhapsody", "blinding lights", "bad guy", "yellow", "levitating",
             "hotel california", "shape of you", "rolling in the deep", "smells like teen spirit", "flowers",
             "hey jude", "take on me", "dancing queen", "billie jean"],
    "movie": ["the matrix", "inception", "frozen", "the godfather", "top gun maverick", "dune", "toy story",
              "jurassic park", "barbie", "oppenheimer", "the lion king", "interstellar", "finding nemo", "titanic",
              "the dark knight", "coco"],
    "show": ["the office", "stranger things", "friends", "breaking bad", "the crown", "bluey", "the mandalorian",
             "succession", "the bear", "seinfeld", "game of thrones", "ted lasso"],
    "genre": ["jazz", "lofi", "classical", "country", "hip hop", "rock", "reggae", "k-pop", "ambient", "blues",
              "salsa", "indie folk"],
    "topic": ["true crime", "history", "personal finance", "science", "football", "cooking", "startups",
              "meditation", "space", "politics", "parenting", "gardening"],
    "account_thing": ["password", "email address", "phone number", "username", "payment method", "billing address",
                      "shipping address", "profile picture", "newsletter settings", "two factor login",
                      "gift card balance", "loyalty points"],
    "order_thing": ["order", "package", "delivery", "parcel", "refund", "return", "shipment", "exchange"],
    "product": ["headphones", "running shoes", "laptop", "coffee maker", "water bottle", "backpack", "phone case",
                "office chair", "yoga mat", "air fryer", "desk lamp", "winter jacket", "smart watch", "blender",
                "gaming mouse", "rain boots", "sofa", "bluetooth speaker", "electric toothbrush", "mattress",
                "sunglasses", "vacuum cleaner", "kettle", "dog bed"],
    "adjective": ["wireless", "waterproof", "cheap", "lightweight", "ergonomic", "stainless steel", "organic",
                  "portable", "noise cancelling", "leather", "foldable", "rechargeable", "vegan", "extra large",
                  "kids", "heavy duty"],
    "brand": ["aurex", "norvik", "kestrel", "lumio", "brightwell", "solano", "tundra", "vexa", "ordell", "pimsy",
              "caldor", "fenwick"],
    "colour": ["black", "white", "red", "navy", "green", "pink", "grey", "beige", "purple", "olive", "gold", "teal"],
    "size": ["small", "medium", "large", "10", "9.5", "xl", "42", "king", "32gb", "15 inch", "2 pack", "1 litre"],
    "price": ["20", "50", "100", "30", "200", "15", "75", "500"],
    "use": ["running", "travel", "gaming", "kids", "the office", "camping", "small kitchens", "back pain",
            "students", "hiking", "working from home", "the gym"],
    "city": ["paris", "london", "tokyo", "new york", "berlin", "chicago", "sydney", "madrid", "toronto", "seoul",
             "lagos", "lima", "denver", "oslo", "mumbai", "boston"],
    "number": ["12", "7", "250", "3", "48", "1000", "15", "64", "9", "100", "36", "5"],
    "unit_pair": ["miles to km", "cups to ml", "fahrenheit to celsius", "pounds to kg", "inches to cm",
                  "ounces to grams", "feet to meters", "gallons to liters"],
    "team": ["lakers", "real madrid", "yankees", "chelsea", "warriors", "patriots", "arsenal", "bayern munich",
             "celtics", "dodgers", "packers", "barcelona"],
    "word": ["serendipity", "ephemeral", "ubiquitous", "quixotic", "hello", "thank you", "good morning", "library",
             "resilience", "nostalgia", "entropy", "paradigm"],
    "language": ["spanish", "french", "german", "japanese", "italian", "korean", "portuguese", "hindi"],
    "time": ["7am", "6:30", "noon", "9 pm", "tomorrow morning", "8:15", "5 am", "midnight"],
    "order_no": ["#48213", "10293847", "A-55120", "#77031", "90012345", "B-31877", "#26650", "55501234", "C-98410",
                 "#13579", "80450917", "D-24680"],
    "device": ["the living room tv", "my phone", "the kitchen speaker", "the bedroom", "spotify", "youtube",
               "the car", "netflix"],
    # Fillers around the whole query, per intent, so one template yields many surface forms.
    "pre_media": ["", "", "", "hey ", "please ", "can you ", "i want to ", "let's ", "quickly ", "now "],
    "post_media": ["", "", "", " please", " now", " on my tv", " on repeat", " loud", " in hd", " tonight"],
    "pre_help": ["", "", "", "hi ", "please ", "urgent ", "question: ", "need help ", "hello ", "customer here "],
    "post_help": ["", "", "", " please", " asap", " today", " on the app", " online", " thanks", " again"],
    "pre_product": ["", "", "", "shop ", "looking for ", "find ", "i need ", "show me ", "search ", "order "],
    "post_product": ["", "", "", " online", " near me", " free shipping", " on sale", " in stock", " reviews",
                     " best price"],
    "pre_other": ["", "", "", "hey ", "quick question ", "ok ", "tell me ", "search ", "google ", "what is "],
    "post_other": ["", "", "", " please", " now", " today", " right now", " exactly", " quickly", " again"],
    "person": ["albert einstein", "marie curie", "the president of france", "serena williams", "the ceo of tesla",
               "frida kahlo", "isaac newton", "the mayor of chicago", "ada lovelace", "nelson mandela"],
}

INTENT_TEMPLATES: dict[str, list[str]] = {
    "media": [
        "play {artist}", "play {song} by {artist}", "listen to {artist}", "watch {movie}",
        "stream {show} season {number}", "put on some {genre} music", "{artist} new album",
        "shuffle {genre} playlist", "trailer for {movie}", "{movie} full movie", "podcast about {topic}",
        "next episode of {show}", "songs like {song}", "play the latest {topic} podcast", "i want to watch {show}",
        "{genre} radio station", "music video {song}", "{artist} live concert", "start {movie} from the beginning",
        "play {song}", "play {artist} on {device}", "watch {show} episode {number} on {device}",
        "{artist} {genre} mix", "resume {show} on {device}", "put {movie} on {device}", "{song} {artist} lyrics video",
    ],
    "help": [
        "how do i reset my {account_thing}", "change my {account_thing}", "where is my {order_thing}",
        "track my {order_thing}", "cancel my {order_thing}", "i can't update my {account_thing}",
        "refund for {product}", "my {product} arrived damaged", "return policy for {product}",
        "contact customer service about my {order_thing}", "why was my {order_thing} delayed",
        "talk to an agent about my {account_thing}", "how to return a {product}", "i forgot my {account_thing}",
        "{order_thing} never arrived", "help with my {account_thing}", "warranty claim for my {product}",
        "how long does a {order_thing} take", "delete my {account_thing}", "problem with my {order_thing}",
        "where is order {order_no}", "{order_thing} {order_no} status", "my {order_thing} for the {product} is late",
        "cancel the {product} {order_thing}", "how do i change the {account_thing} on my account",
        "wrong {product} in {order_thing} {order_no}",
    ],
    "product": [
        "{adjective} {product}", "{brand} {product}", "{product} under ${price}", "{colour} {product} size {size}",
        "best {product} for {use}", "buy {product}", "{adjective} {product} for {use}", "cheap {colour} {product}",
        "{brand} {adjective} {product}", "{product} {size}", "{colour} {brand} {product}",
        "{product} deals", "{adjective} {colour} {product}", "{product} for {use} under {price} dollars",
        "new {brand} {product} {colour}", "{size} {adjective} {product}", "top rated {product}",
        "{product} sale {brand}", "gift ideas {product} for {use}", "{brand} {product} {size}",
        "{colour} {product} for {use}", "{brand} {product} vs {brand} {product}", "{adjective} {product} {size}",
        "{product} {colour} {size}", "compare {product} under ${price}", "{brand} {colour} {adjective} {product}",
    ],
    "other": [
        "weather tomorrow in {city}", "what time is it in {city}", "{number} plus {number}", "convert {unit_pair}",
        "news about {topic}", "who is {person}", "directions to {city}", "set an alarm for {time}",
        "translate {word} to {language}", "define {word}", "{team} score", "how old is {person}",
        "is it going to rain in {city}", "{number} times {number}", "when do the {team} play next",
        "flights to {city}", "how do you say {word} in {language}", "remind me at {time} to call mom",
        "population of {city}", "{number} {unit_pair}",
        "weather in {city} this weekend", "distance from {city} to {city}", "{person} biography",
        "timer for {number} minutes", "what does {word} mean in {language}", "{team} vs {team} tickets",
    ],
}


COLOURS = ("Black", "White", "Silver", "Blue", "Red", "Green", "Rose Gold", "Grey", "Navy", "Purple")


@dataclass(frozen=True)
class ProductType:
    key: str
    type_names: tuple[str, ...]     # how different merchants label the category
    nouns: tuple[str, ...]          # item nouns used in titles
    attrs: tuple[str, ...]
    features: tuple[str, ...]


PRODUCT_TYPES = (
    ProductType("headphones", ("Headphones", "Electronics > Audio > Headphones", "headphones", "Over-Ear Headphones"),
                 ("Wireless Headphones", "Noise Cancelling Headphones", "Over-Ear Bluetooth Headphones"), ("colour",),
                 ("active noise cancellation", "up to 30 hours of battery life", "fast USB-C charging",
                  "a built-in microphone for calls", "a foldable design", "multipoint Bluetooth pairing",
                  "memory-foam ear cushions", "a transparency mode")),
    ProductType("earbuds", ("Earbuds", "Electronics > Audio > Earbuds", "In-Ear Headphones", "earbuds"),
                 ("True Wireless Earbuds", "Bluetooth Earbuds", "Sport Earbuds"), ("colour",),
                 ("a wireless charging case", "IPX5 sweat resistance", "touch controls", "secure-fit ear hooks",
                  "8 hours of playback per charge", "low-latency gaming mode")),
    ProductType("laptop", ("Laptops", "Computers > Laptops", "Notebook", "laptop"),
                 ("Laptop", "Notebook Computer", "Ultrabook"), ("screen", "ram", "storage", "colour"),
                 ("a backlit keyboard", "a full HD IPS display", "Wi-Fi 6 connectivity", "a fingerprint reader",
                  "all-day battery life", "a 1080p webcam", "Thunderbolt 4 ports")),
    ProductType("smartphone", ("Cell Phones", "Smartphones", "Mobile Phones", "smartphone"),
                 ("Smartphone", "5G Smartphone", "Unlocked Phone"), ("storage", "colour"),
                 ("a triple camera system", "a 120Hz OLED display", "face unlock", "5000 mAh battery",
                  "30W fast charging", "dual SIM support")),
    ProductType("tv", ("Televisions", "TV & Video > TVs", "Smart TVs", "television"),
                 ("4K Smart TV", "LED Television", "UHD Smart TV"), ("tv",),
                 ("HDR10 support", "built-in streaming apps", "three HDMI ports", "voice remote control",
                  "a low input lag game mode", "Dolby Audio")),
    ProductType("running_shoes", ("Running Shoes", "Shoes > Athletic > Running", "Sneakers", "running shoes"),
                 ("Running Shoes", "Trail Running Shoe", "Road Running Sneakers"), ("shoe", "colour"),
                 ("a breathable mesh upper", "responsive foam cushioning", "a durable rubber outsole",
                  "a reflective heel tab", "a padded collar", "a wide toe box")),
    ProductType("tshirt", ("T-Shirts", "Clothing > Tops > T-Shirts", "Tees", "t-shirt"),
                 ("Crew Neck T-Shirt", "Cotton Tee", "Performance T-Shirt"), ("apparel", "colour", "pack"),
                 ("100% cotton fabric", "a tagless collar", "moisture-wicking fabric", "a relaxed fit",
                  "double-stitched hems", "pre-shrunk jersey")),
    ProductType("coffee_maker", ("Coffee Makers", "Kitchen > Coffee Machines", "Drip Coffee Machines", "coffee maker"),
                 ("Drip Coffee Maker", "Programmable Coffee Machine", "Coffee Brewer"), ("cups", "colour"),
                 ("a 24-hour programmable timer", "a reusable mesh filter", "an auto shut-off",
                  "a keep-warm plate", "a brew-strength selector", "a pause-and-serve function")),
    ProductType("detergent", ("Laundry Detergent", "Household > Laundry", "Detergents", "laundry detergent"),
                 ("Liquid Laundry Detergent", "HE Laundry Detergent", "Concentrated Detergent"),
                 ("big_volume", "scent", "pack"),
                 ("a stain-fighting formula", "safe for HE machines", "dermatologist tested", "works in cold water",
                  "a plant-based formula", "up to 64 loads")),
    ProductType("water_bottle", ("Water Bottles", "Sports > Hydration", "Drinkware", "water bottle"),
                 ("Insulated Water Bottle", "Stainless Steel Water Bottle", "Sports Bottle"), ("volume", "colour"),
                 ("double-wall vacuum insulation", "a leak-proof lid", "a BPA-free build",
                  "keeps drinks cold for 24 hours", "a powder-coated finish", "a wide mouth")),
    ProductType("protein", ("Protein Powder", "Health > Sports Nutrition", "Supplements", "protein powder"),
                 ("Whey Protein Powder", "Plant Protein Powder", "Protein Shake Mix"), ("weight", "flavour"),
                 ("24g of protein per serving", "no added sugar", "gluten free", "mixes easily",
                  "5g of BCAAs per scoop", "third-party tested")),
    ProductType("flash_drive", ("USB Flash Drives", "Computers > Storage", "Memory Cards", "flash drive"),
                 ("USB 3.0 Flash Drive", "USB-C Flash Drive", "microSD Memory Card"), ("storage", "pack"),
                 ("read speeds up to 150MB/s", "a keyring loop", "a metal casing", "plug-and-play setup",
                  "password protection software", "a five-year warranty")),
    ProductType("blender", ("Blenders", "Kitchen > Small Appliances", "Countertop Blenders", "blender"),
                 ("Countertop Blender", "Personal Blender", "High-Speed Blender"), ("watts", "colour"),
                 ("a BPA-free pitcher", "six speed settings", "a pulse function", "stainless steel blades",
                  "dishwasher-safe parts", "a travel cup")),
    ProductType("backpack", ("Backpacks", "Luggage > Backpacks", "Bags", "backpack"),
                 ("Laptop Backpack", "Travel Backpack", "Hiking Daypack"), ("litres", "colour"),
                 ("a padded laptop sleeve", "water-resistant fabric", "a USB charging port",
                  "adjustable shoulder straps", "a luggage strap", "hidden anti-theft pockets")),
)


BRANDS = ("Aurex", "Norvik", "Kestrel", "Lumio", "Brightwell", "Solano", "Tundra", "Vexa", "Ordell", "Pimsy",
           "Caldor", "Fenwick", "Marlow", "Quenta", "Zephra", "Halden", "Orrin", "Tavi", "Ulmo", "Corvale",
           "Dunmore", "Everly", "Graniq", "Islo", "Jadeport", "Kovra", "Linden", "Mavros", "Nexon", "Oakridge",
           "Pellan", "Rivet", "Sorrel", "Trevi", "Varga", "Wystan")
LINES = ("Pulse", "Aero", "Nova", "Flex", "Core", "Vibe", "Summit", "Echo", "Zen", "Volt", "Terra", "Orbit",
          "Strata", "Drift", "Apex", "Lumen", "Breeze", "Quartz", "Nimbus", "Forge", "Ember", "Glide", "Halo", "Ridge")
MODEL_SUFFIXES = (" Pro", " II", " Plus", " Max", " Lite", "S", "X")


ABBREVIATIONS = (("Wireless", "Wrls"), ("Bluetooth", "BT"), ("Stainless Steel", "SS"), ("Noise Cancelling", "NC"),
                  ("Television", "TV"), ("with", "w/"), ("Programmable", "Prog."), ("Concentrated", "Conc."),
                  ("Computer", "PC"), ("Performance", "Perf."), ("Insulated", "Insul."))


BOILERPLATE = (
    "Backed by a two-year limited warranty and friendly customer support.",
    "Ships in recyclable, plastic-free packaging.",
    "Perfect for home, office and travel.",
    "Not satisfied? Return it within 30 days for a full refund, no questions asked.",
    "Please check the size chart and compatibility notes before ordering.",
    "Designed in-house and tested for everyday durability by our quality team.",
    "Images are for illustration only; actual product may vary slightly in appearance.",
    "Join our rewards programme to earn points on every purchase and get early access to sales.",
    "Order before 2pm for same-day dispatch on weekdays, excluding public holidays.",
)


TITLE_TEMPLATES = (
    "{brand} {line} {model} {noun}, {attrs}",
    "{brand} {noun} {line} {model} - {attrs}",
    "{line} {model} {noun} by {brand} ({attrs})",
    "{brand} {line} {noun} {attrs} {model}",
    "{noun} {brand} {line} {model} {attrs}",
    "{brand} {model} {line} {noun} | {attrs}",
)
