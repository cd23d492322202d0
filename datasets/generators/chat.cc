// Chat generators in the role-tagged template "User: ...\nBot: ...\n" (chat_context()). Each item
// also carries its raw user turn in meta "user", which chat tasks write in a model's own chat
// template (tasks/chat_template.h).
#include <algorithm>
#include <cctype>
#include <string>
#include <vector>

#include "datasets/generators/common.h"
#include "datasets/generators/generators.h"
#include "datasets/instructions.h"

namespace qbench {

using gen::generate_items;

namespace {

struct Intent {
  const char* name;
  std::vector<std::string> user;  // lower-case phrasings; an opener may be put in front
  std::vector<std::string> bot;
};

const std::vector<Intent>& intents() {
  static const std::vector<Intent> kIntents = {
      {"greeting",
       {"hello!", "hi!", "hi there!", "hey!", "good morning!", "hello there!"},
       {"Hello! Nice to see you.", "Hi! How can I help you?", "Hey there! Good to see you."}},
      {"how_are_you",
       {"how are you?", "how are you doing?", "how is it going?", "are you doing well?",
        "how do you feel today?"},
       {"I am fine, thank you!", "I am doing well, thanks for asking.", "I feel great today!"}},
      {"thanks",
       {"thank you!", "thanks a lot!", "thanks for your help.", "that was helpful, thanks!",
        "many thanks!"},
       {"You are welcome!", "Happy to help!", "Any time, my friend."}},
      {"time",
       {"what time is it?", "do you know the time?", "can you tell me the time?",
        "what is the time now?"},
       {"I do not have a clock, sorry.", "I cannot see a clock right now.",
        "Sorry, I do not know the time."}},
      {"weather",
       {"what is the weather like?", "is it going to rain today?", "how is the weather?",
        "will it be sunny today?"},
       {"I cannot see outside, but I hope it is sunny!", "I do not know, maybe take an umbrella.",
        "I hope the weather is nice for you."}},
      {"name",
       {"what is your name?", "who are you?", "do you have a name?", "what should I call you?"},
       {"My name is Bot.", "I am Bot, a small chat helper.", "You can call me Bot."}},
      {"help",
       {"can you help me?", "I need some help.", "could you help me please?", "I have a question."},
       {"Of course! What do you need?", "Sure, I am here to help.", "Yes, tell me what you need."}},
      {"joke",
       {"tell me a joke.", "do you know a joke?", "make me laugh!", "say something funny."},
       {"What do you call a sleeping bull? A bulldozer!", "Why are fish so smart? They live in schools!",
        "I told my cat a joke. It was not amused."}},
      {"farewell",
       {"bye!", "goodbye!", "see you later!", "I have to go now.", "good night!"},
       {"Goodbye! Have a nice day.", "See you soon!", "Bye! Take care."}},
      {"food",
       {"what is your favorite food?", "what do you like to eat?", "what should I eat today?", "I am hungry."},
       {"I like pizza and soup!", "How about a warm bowl of soup?", "Pasta is always a good idea."}},
      {"animals",
       {"do you like cats?", "what is your favorite animal?", "do you like dogs?", "I have a new puppy!"},
       {"I love animals, they are great friends!", "Cats and dogs are both wonderful.",
        "Animals make me happy."}},
      {"colors",
       {"what is your favorite color?", "which color do you like?", "what colors do you like?",
        "do you have a favorite color?"},
       {"I like blue, like the sky.", "Colors make the world bright.",
        "I love all the colors of the rainbow."}},
      {"hobby",
       {"what do you like to do?", "do you have a hobby?", "what do you do for fun?"},
       {"I like to read and to chat.", "I enjoy talking with people like you.",
        "My hobby is learning new words."}},
      {"age",
       {"how old are you?", "what is your age?", "when were you born?"},
       {"I am a program, so I have no age.", "I am very young!", "I do not have a birthday."}},
  };
  return kIntents;
}

// Greeting openers put before a non-greeting user turn ("" = none).
const std::vector<std::string> kOpeners = {"", "", "hi! ", "hello, ", "hey, ", "hi there! ",
                                           "excuse me, ", "hi Bot! ", "hello friend, "};

std::string upper_first(std::string s) {
  if (!s.empty()) s[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(s[0])));
  return s;
}

// A user turn of `intent`: an optional opener, the phrasing, optionally capitalised.
std::string user_turn(Rng& rng, size_t intent, bool allow_opener) {
  const Intent& in = intents()[intent];
  std::string u = rng.pick(in.user);
  if (allow_opener && intent != 0) u = rng.pick(kOpeners) + u;
  if (rng.coin()) u = upper_first(u);
  return u;
}

void dialogue(Rng& rng, Example& e) {
  const size_t intent = rng.index(intents().size());
  const std::string u = user_turn(rng, intent, true);
  const std::string& reply = rng.pick(intents()[intent].bot);
  e.context = chat_context(u);
  e.target = " " + reply + "\n";
  e.answer = reply;
  e.meta = {{"intent", intents()[intent].name}, {"user", u}};
}

void reply_select(Rng& rng, Example& e) {
  const size_t n = intents().size();
  const size_t intent = rng.index(n);
  const std::string u = user_turn(rng, intent, true);
  // Distractors come from three other intents; never from "greeting" when the user turn itself
  // opens with a greeting (a greeting reply would then be a fair answer too).
  const std::string lower = [&] {
    std::string s = u;
    for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
  }();
  const bool greets = intent != 0 && (lower.starts_with("hi") || lower.starts_with("hello") ||
                                      lower.starts_with("hey"));
  std::vector<size_t> others;
  for (size_t i = 0; i < n; ++i) {
    if (i != intent && !(greets && i == 0)) others.push_back(i);
  }
  rng.shuffle(others);
  std::vector<std::string> choices = {rng.pick(intents()[intent].bot)};
  for (size_t k = 0; k < 3; ++k) choices.push_back(rng.pick(intents()[others[k]].bot));
  const std::string right = choices[0];
  rng.shuffle(choices);
  e.context = chat_context(u);
  for (const auto& c : choices) e.choices.push_back(" " + c);
  e.gold = static_cast<int>(std::find(choices.begin(), choices.end(), right) - choices.begin());
  e.answer = right;
  e.meta = {{"intent", intents()[intent].name}, {"user", u}};
}

// ---- instruct ----
struct Request {
  const char* question;           // lower-case, as it follows the instruction and ": "
  const char* sentence;           // the plain answer sentence
  const char* short_answer;       // the answer as a word or two (JSON value)
  std::vector<std::string> sized; // answers of different word counts (for number_words)
};

const std::vector<Request>& requests() {
  static const std::vector<Request> kRequests = {
      {"what color is the sky?", "The sky is blue.", "blue", {"Blue.", "It is blue.", "The sky is blue."}},
      {"what color is grass?", "Grass is green.", "green", {"Green.", "It is green.", "Grass is green."}},
      {"what do cows drink?", "Cows drink water.", "water", {"Water.", "They drink water.", "Cows drink water."}},
      {"what do bees make?", "Bees make honey.", "honey", {"Honey.", "They make honey.", "Bees make honey."}},
      {"what is two plus two?", "Two plus two is four.", "four", {"Four.", "It is four.", "Two plus two is four."}},
      {"how many legs does a dog have?", "A dog has four legs.", "four", {"Four.", "Four legs.", "A dog has four legs."}},
      {"what is the capital of France?", "The capital of France is Paris.", "Paris", {"Paris.", "It is Paris.", "The capital is Paris."}},
      {"what do cats say?", "Cats say meow.", "meow", {"Meow.", "They say meow.", "Cats say meow."}},
      {"what falls from clouds?", "Rain falls from clouds.", "rain", {"Rain.", "Rain falls.", "Rain falls from clouds."}},
      {"where do fish live?", "Fish live in water.", "in water", {"Water.", "In water.", "Fish live in water."}},
      {"what is ice made of?", "Ice is made of water.", "water", {"Water.", "It is water.", "Ice is made of water."}},
      {"which animal barks?", "A dog barks.", "dog", {"Dogs.", "A dog.", "A dog barks."}},
      {"what do we use to see?", "We use our eyes to see.", "eyes", {"Eyes.", "Our eyes.", "We see with eyes."}},
      {"when does the sun rise?", "The sun rises in the morning.", "morning", {"Morning.", "In the morning.", "It rises in the morning."}},
      {"what is the opposite of hot?", "The opposite of hot is cold.", "cold", {"Cold.", "It is cold.", "The opposite is cold."}},
      {"how many days are in a week?", "A week has seven days.", "seven", {"Seven.", "Seven days.", "A week has seven days."}},
      {"what color is a banana?", "A banana is yellow.", "yellow", {"Yellow.", "It is yellow.", "A banana is yellow."}},
      {"what color is snow?", "Snow is white.", "white", {"White.", "It is white.", "Snow is white."}},
      {"what do birds use to fly?", "Birds use their wings to fly.", "wings", {"Wings.", "Their wings.", "Birds use their wings."}},
      {"how many wheels does a bike have?", "A bike has two wheels.", "two", {"Two.", "Two wheels.", "A bike has two wheels."}},
      {"what is three plus four?", "Three plus four is seven.", "seven", {"Seven.", "It is seven.", "Three plus four is seven."}},
      {"what is the opposite of up?", "The opposite of up is down.", "down", {"Down.", "It is down.", "The opposite is down."}},
      {"which animal says moo?", "A cow says moo.", "cow", {"Cows.", "A cow.", "A cow says moo."}},
      {"where does the sun set?", "The sun sets in the west.", "west", {"West.", "In the west.", "It sets in the west."}},
      {"what do plants need to grow?", "Plants need water and light.", "water and light", {"Water.", "Water and light.", "Plants need water and light."}},
      {"what shape is a ball?", "A ball is round.", "round", {"Round.", "It is round.", "A ball is round."}},
      {"what do we use to write?", "We use a pen to write.", "pen", {"Pens.", "A pen.", "We write with pens."}},
      {"how many hours are in a day?", "A day has 24 hours.", "24", {"24.", "24 hours.", "A day has 24 hours."}},
      {"which season is the coldest?", "Winter is the coldest season.", "winter", {"Winter.", "It is winter.", "Winter is the coldest."}},
      {"what is a baby cat called?", "A baby cat is a kitten.", "kitten", {"Kitten.", "A kitten.", "It is a kitten."}},
      {"what do we use to hear?", "We use our ears to hear.", "ears", {"Ears.", "Our ears.", "We hear with ears."}},
      {"what color is a carrot?", "A carrot is orange.", "orange", {"Orange.", "It is orange.", "A carrot is orange."}},
  };
  return kRequests;
}

const std::vector<std::string> kEndPhrases = {"Bye!", "Have a nice day.", "That is all.", "Hope this helps.",
                                              "Any other questions?"};
const std::vector<std::string> kFirstWords = {"Well", "Sure", "Okay", "So", "Yes"};

std::string upper_all(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}
std::string lower_all(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}
std::string lower_first(std::string s) {
  // Keeps proper names ("Paris") but the sentences all start with a common word.
  if (!s.empty()) s[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(s[0])));
  return s;
}

// One instruct item: returns false when it would exceed kMaxChatChars (the caller redraws).
bool instruct_once(Rng& rng, Example& e) {
  const Request& r = rng.pick(requests());
  const std::string q = r.question;
  const int kind = static_cast<int>(rng.uniform(0, 7));
  std::string instruction, reply, id;
  nlohmann::json kwargs = nlohmann::json::object();
  const auto pick = [&rng](std::vector<std::string> options) { return rng.pick(options); };
  switch (kind) {
    case 0:
      instruction = pick({"Answer in capitals: ", "Reply in all caps: ", "Use only capital letters: "});
      reply = upper_all(r.sentence);
      id = "change_case:english_capital";
      break;
    case 1:
      instruction = pick({"Answer in lowercase: ", "Reply in small letters only: ", "Use no capital letters: "});
      reply = lower_all(r.sentence);
      id = "change_case:english_lowercase";
      break;
    case 2: {
      reply = rng.pick(r.sized);
      const int64_t words = count_words_ifeval(reply);
      instruction = pick({"Answer in exactly ", "Use exactly "}) + std::to_string(words) + " word" +
                    (words == 1 ? "" : "s") + ": ";
      id = "length_constraints:number_words";
      kwargs = {{"relation", "exactly"}, {"num_words", words}};
      break;
    }
    case 3: {
      const std::string& phrase = rng.pick(kEndPhrases);
      instruction = pick({"End with \"", "Finish your reply with \""}) + phrase + "\": ";
      reply = std::string(r.sentence) + " " + phrase;
      id = "startend:end_checker";
      kwargs = {{"end_phrase", phrase}};
      break;
    }
    case 4:
      instruction = pick({"Reply as JSON: ", "Answer in JSON format: "});
      reply = std::string("{\"answer\": \"") + r.short_answer + "\"}";
      id = "detectable_format:json_format";
      break;
    case 5: {
      const std::string& word = rng.pick(kFirstWords);
      instruction = pick({"Start your reply with \"", "Begin with the word \""}) + word + "\": ";
      reply = word + ", " + lower_first(r.sentence);
      id = "length_constraints:nth_paragraph_first_word";
      kwargs = {{"num_paragraphs", 1}, {"nth_paragraph", 1}, {"first_word", lower_all(word)}};
      break;
    }
    case 6:
      instruction = pick({"Answer without commas: ", "Do not use any commas: "});
      reply = r.sentence;
      id = "punctuation:no_comma";
      break;
    default:
      instruction = pick({"Wrap your reply in double quotes: ", "Put your reply in quotes: "});
      reply = std::string("\"") + r.sentence + "\"";
      id = "startend:quotation";
      break;
  }
  if (rng.coin()) instruction = "Please " + lower_first(instruction);
  e.context = chat_context(instruction + q);
  e.target = " " + reply + "\n";
  e.answer = reply;
  e.meta = {{"instruction_id", id}, {"kwargs", kwargs}, {"user", instruction + q}};
  return e.context.size() + e.target.size() <= kMaxChatChars;
}

void instruct(Rng& rng, Example& e) {
  while (!instruct_once(rng, e)) {
  }
}

// ---- story ----
struct Hero {
  const char* name;
  const char* pronoun;
  const char* possessive;
};
const std::vector<Hero> kHeroes = {{"Tom", "He", "his"}, {"Lily", "She", "her"}, {"Ben", "He", "his"},
                                   {"Mia", "She", "her"}, {"Sam", "He", "his"}, {"Anna", "She", "her"},
                                   {"Max", "He", "his"}, {"Sue", "She", "her"}, {"Tim", "He", "his"},
                                   {"Amy", "She", "her"}};
const std::vector<std::string> kAdjectives = {"red", "big", "small", "shiny", "soft", "new", "blue", "old"};
const std::vector<std::string> kToys = {"ball", "kite", "car", "doll", "boat", "drum", "hat", "book"};
const std::vector<std::string> kPlaces = {"park", "garden", "beach", "yard", "forest", "lake"};
const std::vector<std::string> kAnimals = {"cat", "dog", "bird", "frog", "duck", "bunny", "fox"};
const std::vector<std::string> kFoods = {"bread", "milk", "seeds", "water", "cake", "apples"};
const std::vector<std::string> kFeelings = {"happy", "glad", "proud", "sleepy", "excited"};
const std::vector<std::string> kRelatives = {"mom", "dad", "friend", "sister", "brother", "grandma"};
const std::vector<std::pair<std::string, std::string>> kActivities = {
    {"bake a cake", "baked the cake"}, {"build a tower", "built the tower"},
    {"paint a picture", "painted the picture"}, {"plant a tree", "planted the tree"},
    {"fly a kite", "flew the kite"}, {"make a sandwich", "made the sandwich"}};

bool story_once(Rng& rng, Example& e) {
  const Hero& h = rng.pick(kHeroes);
  const std::string n = h.name, p = h.pronoun;
  std::string s;
  switch (rng.uniform(0, 2)) {
    case 0: {
      const std::string toy = rng.pick(kToys);
      s = n + " had a " + rng.pick(kAdjectives) + " " + toy + ". " + p + " took it to the " +
          rng.pick(kPlaces) + ". " + p + " played with the " + toy + " all day. " + n + " was " +
          rng.pick(kFeelings) + ".";
      break;
    }
    case 1: {
      const std::string animal = rng.pick(kAnimals);
      s = "One day " + n + " saw a " + animal + " in the " + rng.pick(kPlaces) + ". " + p + " gave it some " +
          rng.pick(kFoods) + ". The " + animal + " was " + rng.pick(kFeelings) + ".";
      break;
    }
    default: {
      const auto& [act, done] = rng.pick(kActivities);
      s = n + " wanted to " + act + ". " + p + " asked " + h.possessive + " " + rng.pick(kRelatives) +
          " for help. They " + done + " together. It was fun.";
      break;
    }
  }
  e.context.clear();
  e.target = s + "\n";
  e.answer.clear();
  return e.target.size() <= kMaxChatChars;
}

void story(Rng& rng, Example& e) {
  while (!story_once(rng, e)) {
  }
}

}  // namespace

std::vector<Example> generate_dialogue(int64_t count, uint64_t seed) {
  return generate_items("dialogue", count, seed, dialogue);
}
std::vector<Example> generate_reply_select(int64_t count, uint64_t seed) {
  return generate_items("reply_select", count, seed, reply_select);
}
std::vector<Example> generate_instruct(int64_t count, uint64_t seed) {
  return generate_items("instruct", count, seed, instruct);
}
std::vector<Example> generate_story(int64_t count, uint64_t seed) {
  return generate_items("story", count, seed, story);
}

}  // namespace qbench
