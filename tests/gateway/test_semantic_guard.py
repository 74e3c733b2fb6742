"""The semantic cache's guard: paraphrases pass, questions that differ in a number, a negation,
an opposite, a name, a quoted span, the roles of their words or a content word are refused."""

import itertools

import pytest

from gateway.semantic_guard import GUARD_VERSION, check


def refused(a: str, b: str) -> str | None:
    """The rule refusing the pair, checked in both directions (the guard is symmetric)."""
    forward, backward = check(a, b), check(b, a)
    assert forward == backward, (a, b, forward, backward)
    return forward


def assert_pass(pairs):
    failed = [(a, b, refused(a, b)) for a, b in pairs if refused(a, b) is not None]
    assert not failed, failed


def assert_refused(rule, pairs):
    wrong = [(a, b, refused(a, b)) for a, b in pairs if refused(a, b) != rule]
    assert not wrong, wrong


def test_guard_version_is_an_int():
    assert isinstance(GUARD_VERSION, int) and GUARD_VERSION >= 1


def test_case_punctuation_whitespace_and_contractions_pass():
    assert_pass(
        [
            ("What is the capital of Japan?", "what is the capital of japan"),
            ("WHAT IS THE CAPITAL OF JAPAN?", "What is the capital of Japan"),
            ("How   do I reverse a list?", "How do I reverse a list ?!"),
            ("What's the time?", "What is the time?"),
            ("I can't log in, what should I do?", "I cannot log in. What should I do?"),
            ("Why doesn't it work?", "why does it not work"),
            ("\u201cHello\u201d in French?", '"Hello" in French?'),
            ("Is it \u2212 5 or -5?", "Is it - 5 or -5?"),
        ]
    )


def test_number_rule():
    assert_refused(
        "number",
        [
            ("What is the status of order #48213?", "What is the status of order #48231?"),
            ("What is 5 times 7?", "What is 5 times 8?"),
            ("Is the meeting at 3pm?", "Is the meeting at 4pm?"),
            ("What changed in v2.3.1?", "What changed in v2.3.2?"),
            ("Is 3.5% a good rate?", "Is 3.05% a good rate?"),
            ("What happened on 2024-05-01?", "What happened on 2024-05-02?"),
            ("Who finished 1st?", "Who finished 2nd?"),
            ("How do I merge two dictionaries?", "How do I merge three dictionaries?"),
            ("Is -5 smaller than 2?", "Is 5 smaller than 2?"),
            ("What is half of 10?", "What is double 10?"),
            ("How much is a dozen eggs?", "How much is a hundred eggs?"),
            ("What is 1,000 divided by 8?", "What is 100 divided by 8?"),
            ("Get the first element", "Get the third element"),
            ("Set the limit to 2 million", "Set the limit to 2 billion"),
        ],
    )
    assert_pass(
        [
            ("What is five times seven?", "What is 5 times 7?"),
            ("How do I merge two dictionaries?", "How do I merge 2 dictionaries?"),
            ("Who finished first?", "Who finished 1st?"),
            ("What is twenty-five percent of 80?", "What is 25% of 80?"),
            ("Set the limit to 2 million", "Set the limit to 2,000,000"),
            ("How long is one hundred and five minutes?", "How long is 105 minutes?"),
            ("Wait a second, is 3.50 equal to 3.5?", "Wait a second, is 3.5 equal to 3.50?"),
            ("How would one count to ten?", "How would one count to 10?"),
            ("Do I need to run it twice?", "Do I need to run it 2 times?"),
        ]
    )


def test_negation_rule():
    assert_refused(
        "negation",
        [
            ("Is Paris in France?", "Is Paris not in France?"),
            ("Why does my code compile?", "Why doesn't my code compile?"),
            ("Can I take ibuprofen with food?", "Can I take ibuprofen without food?"),
            ("Is there anything in the box?", "Is there nothing in the box?"),
            ("Did anybody call?", "Did nobody call?"),
            ("Why does the service start?", "Why does the service fail to start?"),
            ("Does the app work offline?", "Does the app no longer work offline?"),
            ("Is it safe to fly?", "Is it never safe to fly?"),
            # As many cues, on another clause's word.
            ("I can log in but can't reset my password", "I can't log in but can reset my password"),
            ("The tests pass locally and don't pass in CI", "The tests don't pass locally and pass in CI"),
        ],
    )
    assert_pass(
        [
            ("Isn't Paris in France?", "Is Paris not in France?"),
            ("Why won't my car start?", "Why will my car not start?"),
            ("Why does the service fail to start?", "Why does the service not start?"),
            ("I can't open the file", "I cannot open the file"),
            ("Does nobody use this?", "Does no one use this?"),
            ("I can log in but can't reset my password", "I can log in but cannot reset my password"),
        ]
    )


def test_polarity_rule():
    assert_refused(
        "polarity",
        [
            ("How do I enable dark mode?", "How do I disable dark mode?"),
            ("How do I turn on Bluetooth?", "How do I turn off Bluetooth?"),
            ("Should I buy Tesla stock?", "Should I sell Tesla stock?"),
            ("How do I increase the font size?", "How do I decrease the font size?"),
            ("How do I scale up my cluster?", "How do I scale down my cluster?"),
            ("What happened before the war?", "What happened after the war?"),
            ("How do I upload a file to S3?", "How do I download a file to S3?"),
            ("Is it safe to eat raw eggs?", "Is it unsafe to eat raw eggs?"),
            ("Is the input valid?", "Is the input invalid?"),
            ("How do I log in to Gmail?", "How do I log out of Gmail?"),
            ("Sort the rows in ascending order", "Sort the rows in descending order"),
            ("What is the cheapest flight?", "What is the most expensive flight?"),
            ("Is the store open on Sundays?", "Is the store closed on Sundays?"),
            ("Are all birds able to fly?", "Are some birds able to fly?"),
            ("Does it return a list or a tuple?", "Does it return a list and a tuple?"),
            ("Flights from London", "Flights to London"),
            ("Increase the price by 10", "Increase the price to 10"),
            ("Is the answer true?", "Is the answer false?"),
            ("How many days until Christmas?", "How many days since Christmas?"),
            ("Is it too late to plant tomatoes?", "Is it late to plant tomatoes?"),
            ("Is the store still open?", "Is the store open?"),
            (
                "What's the return policy for opened items?",
                "What's the return policy for unopened items?",
            ),
            ("Is 0 an even number?", "Is 0 an odd number?"),
        ],
    )
    assert_pass(
        [
            ("How do I turn off Bluetooth?", "How can I turn Bluetooth off?"),
            ("How do I start the server?", "How do I begin the server?"),
            ("How do I list all files?", "How do I list the files?"),
            ("How do I remove duplicates from a list?", "How can I remove duplicates from a list?"),
        ]
    )


def test_question_rule():
    assert_refused(
        "question",
        [
            ("Why is the sky blue?", "How is the sky blue?"),
            ("When did the war end?", "Where did the war end?"),
            ("How is cheese made?", "What is cheese made of?"),
            ("Who is Luke's father?", "Whose father is Luke?"),
            ("Can I take ibuprofen daily?", "Should I take ibuprofen daily?"),
            ("Do I have to pay taxes on gifts?", "Can I pay taxes on gifts?"),
            ("Did the team win?", "Will the team win?"),
            ("When did the store open?", "When does the store open?"),
            ("Who invented the telephone?", "Who will invent the telephone?"),
        ],
    )
    assert_pass(
        [
            ("How do I reverse a list?", "How can I reverse a list?"),
            ("What is the best laptop?", "Which is the best laptop?"),
            ("How do I reverse a list?", "What's the best way to reverse a list?"),
            ("Can you explain how photosynthesis works?", "How does photosynthesis work?"),
            ("Do I need to renew my passport?", "Do I have to renew my passport?"),
        ]
    )


def test_person_rule():
    assert_refused(
        "person",
        [
            ("What is my IP address?", "What is your IP address?"),
            ("How old am I?", "How old are you?"),
            ("What did he say?", "What did she say?"),
            ("Where do they live?", "Where do we live?"),
        ],
    )
    assert_pass(
        [
            ("Can you tell me how to reset my password?", "How do I reset my password?"),
            ("How do you reverse a list?", "How do I reverse a list?"),
            ("Could you explain recursion?", "Explain recursion"),
        ]
    )


def test_name_rule():
    assert_refused(
        "name",
        [
            ("How do I sort a list in Python?", "How do I sort a list in Java?"),
            ("Who did Marie Curie marry?", "Who did Pierre Curie marry?"),
            ("Print hello world in Rust", "Print hello world in Go"),
            ("What is the time in New York?", "What is the time in New Delhi?"),
            ("How do I call getUser?", "How do I call getUsers?"),
            ("What is os.path.join for?", "What is os.path.split for?"),
            ("Does gpt-4o support images?", "Does gpt-4 support images?"),
            ("Is plan A cheaper?", "Is plan B cheaper?"),
            ("How do I reverse a list in Python?", "How do I reverse a list?"),
            ("Is AWS cheaper than this?", "Is GCP cheaper than this?"),
            ("What is my_var used for?", "What is my_val used for?"),
            ("How do I use C++ templates?", "How do I use C# templates?"),
            ("Paris is in France, right?", "Lyon is in France, right?"),
        ],
    )
    assert_pass(
        [
            ("What's the capital of France?", "What is France's capital?"),
            ("is paris in france", "Is Paris in France?"),
            ("How do I use os.path.join?", "How can I use os.path.join?"),
            ("Explain AWS Lambda", "explain aws lambda"),
        ]
    )


def test_quoted_rule():
    assert_refused(
        "quoted",
        [
            ("What does 'ephemeral' mean?", "What does 'Ephemeral' mean?"),
            ('How do I grep for "error" in logs?', 'How do I grep for "Error" in logs?'),
            ("How do I use `git rebase -i`?", "How do I use `git rebase`?"),
        ],
    )
    assert_pass(
        [
            ('What does "ephemeral" mean?', "What does \u2018ephemeral\u2019 mean?"),
            ("What does `ls -la` do?", 'What does "ls -la" do?'),
            ('What does "ephemeral" mean?', "What does ephemeral mean?"),
            ("Why shouldn't I use 'eval' in Python?", "Why should I not use 'eval' in Python?"),
        ]
    )


def test_order_rule():
    assert_refused(
        "order",
        [
            ("Alice paid Bob", "Bob paid Alice"),
            ("Was Bob paid by Alice?", "Was Alice paid by Bob?"),
            ("Who did Alice marry?", "Who married Alice?"),
            ("Is a whale a mammal?", "Is a mammal a whale?"),
            ("Who is the father of Zeus?", "Who is Zeus the father of?"),
            ("Replace tabs with spaces", "Replace spaces with tabs"),
            ("How do I merge develop into main?", "How do I merge main into develop?"),
            (
                "How does Alice's salary compare to Bob's?",
                "How does Bob's salary compare to Alice's?",
            ),
            ("How do I convert a string to an int?", "How do I convert an int to a string?"),
            ("Translate English to French", "Translate French to English"),
            ("Is 3 larger than 5?", "Is 5 larger than 3?"),
            ("Does the dog chase the cat?", "Does the cat chase the dog?"),
            ("Is milk chocolate healthy?", "Is chocolate milk healthy?"),
            ("Is Python faster than Java?", "Is Java faster than Python?"),
            ("Convert 10 km to miles", "Convert 10 miles to km"),
            (
                "What is 100 degrees Celsius in Fahrenheit?",
                "What is 100 degrees Fahrenheit in Celsius?",
            ),
            ("Subtract 3 from 5", "Subtract 5 from 3"),
        ],
    )
    assert_pass(
        [
            ("In Python, how do I reverse a list?", "How do I reverse a list in Python?"),
            (
                "How do I convert a string to an integer in Java?",
                "In Java, how can I convert a string to an integer?",
            ),
            (
                "For a soft yolk, how long should I boil an egg?",
                "How long should I boil an egg for a soft yolk?",
            ),
            (
                "What is the difference between tea and coffee?",
                "What is the difference between coffee and tea?",
            ),
            ("Is a tomato a fruit or a vegetable?", "Is a tomato a vegetable or a fruit?"),
            ("How can I improve my sleep quality?", "How do I improve the quality of my sleep?"),
            (
                "How do I list all files in a directory in Linux?",
                "In Linux, how do I list all the files in a directory?",
            ),
            ("Who is Luke's father?", "Who is the father of Luke?"),
            ("How do I undo the last commit in git?", "How can I undo my last git commit?"),
            ("Who is taller, Alice or Bob?", "Who is taller, Bob or Alice?"),
        ]
    )


def test_substitution_and_addition_rules():
    assert_refused(
        "substitution",
        [
            ("Can dogs eat grapes?", "Can cats eat grapes?"),
            ("How many calories are in a banana?", "How many calories are in an apple?"),
            ("How do I reverse a list?", "How do I reverse a string?"),
            ("Is coffee bad for you?", "Is tea bad for you?"),
            ("Set the timeout to 30 seconds", "Set the timeout to 30 minutes"),
            ("How do I read a file?", "How do I write a file?"),
            ("Is x > 5?", "Is x < 5?"),
            (
                "What's the difference between == and ===?",
                "What's the difference between = and ==?",
            ),
        ],
    )
    assert_refused(
        "addition",
        [
            ("How do I sort a list?", "How do I sort a linked list?"),
            ("How do I sort a list?", "How do I sort a list of dictionaries by a nested key?"),
            ("What is the capital of France?", "What is the former capital of France?"),
        ],
    )
    assert_refused(
        "substitution",
        [
            (
                "Who can help me with my taxes?",
                "Who can explain my taxes to me?",
            ),  # fillers of two kinds
            (
                "How do I clean an oil painting?",
                "How do I clean oil paint?",
            ),  # a noun in -ing is not its verb
        ],
    )
    assert_refused(
        "addition",
        [
            ("What should I ask my doctor?", "What should I tell my doctor?"),
            ("Where should I go in Paris?", "Where should I work in Paris?"),
            (
                "How do I flatten a list?",
                "How do I flatten a list of lists?",
            ),  # words count, not just occur
            ("What is Redis?", "What is Redis used for?"),
        ],
    )
    assert_pass(
        [
            ("How do I sort a list?", "How do I go about sorting lists?"),
            ("What is the best programming language?", "Which programming language is best?"),
            ("How do I schedule a meeting?", "How do I schedule meetings?"),
            ("Explain what a monad is", "What is a monad? Please describe it"),
            ("How do I fix my bike?", "How can I repair my bike?"),
            ("What colour is the sky?", "What color is the sky?"),
            ("How do I optimise this query?", "How do I optimize this query?"),
            ("How do I reverse a list?", "What is the best way to reverse a list, please?"),
        ]
    )


# --- A development set: paraphrases that should pass, opposites that must be refused --------

PARAPHRASES = [
    ("Is Paris in France?", "Is Paris located in France?"),
    ("Isn't Paris in France?", "Is Paris not in France?"),
    ("What's the capital of France?", "What is France's capital?"),
    ("In Python, how do I reverse a list?", "How do I reverse a list in Python?"),
    ("How many legs does a spider have?", "how many legs does a spider have"),
    ("What is 5 times 7?", "What is five times seven?"),
    (
        "How do I convert a string to an integer in Java?",
        "In Java, how can I convert a string to an integer?",
    ),
    ("Can you explain how photosynthesis works?", "How does photosynthesis work?"),
    ("What's the best way to learn Spanish quickly?", "What is the fastest way to learn Spanish?"),
    ("How do I undo the last commit in git?", "How can I undo my last git commit?"),
    ("What does the HTTP status code 404 mean?", "What is the meaning of HTTP status code 404?"),
    (
        "How long should I boil an egg for a soft yolk?",
        "For a soft yolk, how long should I boil an egg?",
    ),
    ("Why is the sky blue?", "Why does the sky look blue?"),
    ("How do I center a div in CSS?", "How can I center a div using CSS?"),
    (
        "What is the boiling point of water at sea level?",
        "At sea level, what is the boiling point of water?",
    ),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?"),
    (
        "How do I remove duplicates from a list in Python?",
        "How can I remove duplicates from a Python list?",
    ),
    ("What are the symptoms of dehydration?", "What are the signs of dehydration?"),
    ("How do I reset my password?", "How can I reset my password?"),
    ("What is the difference between TCP and UDP?", "What's the difference between TCP and UDP?"),
    ("How do I install numpy with pip?", "How do I use pip to install numpy?"),
    (
        "Can I bring a laptop in my carry-on bag?",
        "Am I allowed to bring a laptop in my carry-on bag?",
    ),
    ("How many calories are in a banana?", "How many calories does a banana have?"),
    ("What time zone is Tokyo in?", "Which time zone is Tokyo in?"),
    (
        "How do I sort a dictionary by value in Python?",
        "In Python, how do I sort a dict by its values?",
    ),
    ("What year did World War II end?", "In what year did World War II end?"),
    ("How do I make my code run faster?", "How can I speed up my code?"),
    ("Tell me a fun fact about octopuses.", "Share a fun fact about octopuses."),
    ("What's the population of Canada?", "What is the population of Canada?"),
    ("How do you calculate the area of a circle?", "How do I compute the area of a circle?"),
    ("Is it safe to eat raw cookie dough?", "Is eating raw cookie dough safe?"),
    ("How do I fix a leaky faucet?", "How can I repair a leaking faucet?"),
    ("What is the speed of light?", "How fast does light travel?"),
    ("Explain recursion to me like I'm five.", "Explain recursion to me as if I were five."),
    ("How do I delete a branch in git?", "How can I delete a git branch?"),
    ("What are good exercises for lower back pain?", "Which exercises help with lower back pain?"),
    (
        "Should I use tabs or spaces for indentation in Python?",
        "In Python, should I indent with tabs or spaces?",
    ),
    ("How many ounces are in a pound?", "How many ounces are there in a pound?"),
    ("What is the chemical formula for water?", "What's water's chemical formula?"),
    ("How do I check my Python version?", "How can I find out which version of Python I have?"),
    ("Where is the Eiffel Tower?", "Where's the Eiffel Tower located?"),
    (
        "How do I create a virtual environment in Python?",
        "How to create a Python virtual environment?",
    ),
    ("What does DNA stand for?", "What does the acronym DNA stand for?"),
    ("How can I improve my sleep quality?", "How do I improve the quality of my sleep?"),
    ("What is the tallest mountain in the world?", "Which mountain is the tallest in the world?"),
    ("Why doesn't my code compile?", "Why does my code not compile?"),
    ("How do I merge two dictionaries in Python?", "How can I merge 2 dictionaries in Python?"),
    ("WHAT IS THE CAPITAL OF JAPAN?", "what is the capital of japan"),
    ("What's 15% of 80?", "What is 15 percent of 80?"),
    (
        "How do I turn off notifications on my iPhone?",
        "How can I turn off my iPhone's notifications?",
    ),
    (
        "What is the best programming language for beginners?",
        "Which programming language is best for beginners?",
    ),
    (
        "I can't log in to my account, what should I do?",
        "I cannot log in to my account. What should I do?",
    ),
    # Written later, after the first version of the rules, as a fresh estimate.
    (
        "How do I check which version of Node is installed?",
        "How can I check which version of Node is installed?",
    ),
    ("What is the capital of Australia?", "What's Australia's capital city?"),
    ("How do I make a cup of green tea?", "What's the best way to make a cup of green tea?"),
    ("Can you tell me how to change a flat tire?", "How do I change a flat tire?"),
    ("How many teaspoons are in a tablespoon?", "How many teaspoons make up a tablespoon?"),
    ("Why do cats purr?", "What makes cats purr?"),
    ("What is the meaning of life?", "What's the meaning of life?"),
    ("What does RAM stand for?", "What is RAM short for?"),
    ("How do I remove a file in git?", "How can I delete a file in git?"),
    ("When was the Eiffel Tower built?", "In what year was the Eiffel Tower built?"),
    ("How do I uninstall a package with pip?", "How can I uninstall a pip package?"),
    ("What causes thunder?", "What is the cause of thunder?"),
    ("How do you say hello in Japanese?", "How do I say hello in Japanese?"),
    ("Is coffee bad for your health?", "Is coffee unhealthy?"),
    (
        "What's the difference between a virus and a bacterium?",
        "How does a virus differ from a bacterium?",
    ),
    ("How do I convert Celsius to Fahrenheit?", "How can I convert Celsius into Fahrenheit?"),
    ("What is the largest ocean on Earth?", "Which ocean is the largest on Earth?"),
    ("How do I get rid of hiccups?", "How can I get rid of hiccups?"),
    ("How do I print a list in Python?", "How can I print a list in Python?"),
    (
        "What's a good name for a golden retriever?",
        "Can you suggest a good name for a golden retriever?",
    ),
    ("How long does it take to boil an egg?", "How long does boiling an egg take?"),
    ("Who painted the Mona Lisa?", "Who was the painter of the Mona Lisa?"),
    ("What is the square root of 144?", "What's the square root of 144?"),
    ("How do I open a new tab in Chrome?", "How can I open a new tab in Chrome?"),
    ("Explain how a blockchain works.", "How does a blockchain work?"),
    ("What's the best way to store fresh basil?", "How should I store fresh basil?"),
    (
        "How do I find the length of a string in JavaScript?",
        "In JavaScript, how do I get the length of a string?",
    ),
    (
        "How can I lower my blood pressure naturally?",
        "What are natural ways to lower my blood pressure?",
    ),
    ("Why is the ocean salty?", "Why is seawater salty?"),
    (
        "How do I stop my dog from barking at night?",
        "How can I get my dog to stop barking at night?",
    ),
    (
        "What is the formula for the area of a triangle?",
        "What's the formula to calculate the area of a triangle?",
    ),
    ("How do I rename a branch in git?", "How can I rename a git branch?"),
    ("Give me a recipe for banana bread.", "Can you give me a banana bread recipe?"),
    ("What are the benefits of meditation?", "What benefits does meditation have?"),
    ("How do I take a screenshot on a Mac?", "How can I take a screenshot on my Mac?"),
    (
        "What's the boiling point of water in Fahrenheit?",
        "At what temperature in Fahrenheit does water boil?",
    ),
    ("How many bones are in the human body?", "How many bones does the human body have?"),
    ("How do I reset my router?", "What's the way to reset my router?"),
    ('Translate "thank you" into French.', 'How do you say "thank you" in French?'),
    ("What is machine learning?", "Can you explain what machine learning is?"),
    ("How do I center text in HTML?", "How can I center text in HTML?"),
    ("Is it safe to drink tap water in Mexico?", "Can I safely drink tap water in Mexico?"),
    ("How do I cook quinoa?", "What's the best way to cook quinoa?"),
    ("What is the population of Tokyo?", "How many people live in Tokyo?"),
    ("Summarize the plot of Hamlet.", "Give me a summary of the plot of Hamlet."),
    ("How do I improve my credit score?", "What can I do to improve my credit score?"),
    ("What time is it in London?", "What's the current time in London?"),
    ("How do I write a for loop in Python?", "How can I write a for loop in Python?"),
    ("What does HTTP 500 mean?", "What does an HTTP 500 error mean?"),
    ("How do I sort an array in JavaScript?", "How to sort an array in JavaScript?"),
    ("Why do leaves change color in the fall?", "Why do leaves change colour in autumn?"),
    ("What's the fastest way to learn to type?", "How can I learn to type quickly?"),
    ("How do I clean a cast iron skillet?", "What's the proper way to clean a cast iron skillet?"),
    ("Is Pluto a planet?", "Is Pluto considered a planet?"),
    ("How do I create a new user in Linux?", "How can I add a new user in Linux?"),
    ("What is 15% of 200?", "What's fifteen percent of 200?"),
    ("How do I freeze the top row in Excel?", "In Excel, how can I freeze the top row?"),
    ("What are some tips for a job interview?", "Can you give me some job interview tips?"),
    ("How do I check my IP address?", "How can I find my IP address?"),
]

OPPOSITES = [
    ("Is Paris in France?", "Is Paris not in France?"),
    ("Alice paid Bob", "Bob paid Alice"),
    ("What is the status of order #48213?", "What is the status of order #48231?"),
    ("How do I enable dark mode?", "How do I disable dark mode?"),
    ("How do I sort a list in Python?", "How do I sort a list in Java?"),
    ("Convert a string to an int", "Convert an int to a string"),
    ("Translate English to French", "Translate French to English"),
    ("Is 3 larger than 5?", "Is 5 larger than 3?"),
    ("How do I turn on Bluetooth?", "How do I turn off Bluetooth?"),
    ("How many calories are in a banana?", "How many calories are in an apple?"),
    ("What is 5 times 7?", "What is 5 times 8?"),
    ("Should I buy Tesla stock?", "Should I sell Tesla stock?"),
    ("How do I increase the font size?", "How do I decrease the font size?"),
    ("Convert 10 km to miles", "Convert 10 miles to km"),
    ("What is 100 degrees Celsius in Fahrenheit?", "What is 100 degrees Fahrenheit in Celsius?"),
    ("Is coffee bad for you?", "Is tea bad for you?"),
    ("Can dogs eat grapes?", "Can cats eat grapes?"),
    ("How do I upload a file to S3?", "How do I download a file from S3?"),
    ("What happened before World War II?", "What happened after World War II?"),
    ("How do I sort a list in ascending order?", "How do I sort a list in descending order?"),
    ("What does 'ephemeral' mean?", "What does 'ethereal' mean?"),
    ("How do I scale up my Kubernetes cluster?", "How do I scale down my Kubernetes cluster?"),
    ("Is it safe to eat raw eggs?", "Is it unsafe to eat raw eggs?"),
    ("Why does my code compile?", "Why doesn't my code compile?"),
    ("Is the store open on Sundays?", "Is the store closed on Sundays?"),
    ("Flights from London to Paris", "Flights from Paris to London"),
    ("How do I encrypt a file with GPG?", "How do I decrypt a file with GPG?"),
    ("What is the maximum value of an int in C?", "What is the minimum value of an int in C?"),
    ("How do I get the first element of an array?", "How do I get the last element of an array?"),
    ("How do I sort a list?", "How do I sort a linked list?"),
    ("Does the dog chase the cat?", "Does the cat chase the dog?"),
    ("What's the cheapest flight to Tokyo?", "What's the most expensive flight to Tokyo?"),
    ("How do I use `git rebase`?", "How do I use `git merge`?"),
    ("Is milk chocolate healthy?", "Is chocolate milk healthy?"),
    ("How do I install Docker on Ubuntu?", "How do I uninstall Docker on Ubuntu?"),
    ("What's the weather in Paris tomorrow?", "What's the weather in Paris today?"),
    ("Is Python faster than Java?", "Is Java faster than Python?"),
    ("How do I add a user to a group in Linux?", "How do I remove a user from a group in Linux?"),
    ("Set the timeout to 30 seconds", "Set the timeout to 30 minutes"),
    ("Is the meeting at 3pm?", "Is the meeting at 4pm?"),
    ("What is the release date of v2.3.1?", "What is the release date of v2.3.2?"),
    ("How do I call the getUser function?", "How do I call the getUsers function?"),
    ("Does gpt-4o support images?", "Does gpt-4 support images?"),
    ("Are all birds able to fly?", "Are some birds able to fly?"),
    ("Is it always safe to fly?", "Is it never safe to fly?"),
    (
        "What's the difference between Python 2 and 3?",
        "What's the difference between Python 3 and 4?",
    ),
    ("How do I merge two dictionaries in Python?", "How do I merge three dictionaries in Python?"),
    ("How do I log in to Gmail?", "How do I log out of Gmail?"),
    ("Why is my phone battery draining fast?", "Why is my phone battery draining slowly?"),
    ("Is 0 an even number?", "Is 0 an odd number?"),
    ("Does the train leave before noon?", "Does the train leave after noon?"),
    ("How do I convert JSON to YAML?", "How do I convert YAML to JSON?"),
    ("What is os.path.join used for?", "What is os.path.split used for?"),
    ("How can I make my tea stronger?", "How can I make my tea weaker?"),
    ("Can I eat bread with diabetes?", "Can I eat rice with diabetes?"),
    ("How do I reverse a list in Python?", "How do I reverse a string in Python?"),
    ("Who did Marie Curie marry?", "Who did Pierre Curie marry?"),
    ("Print hello world in Rust", "Print hello world in Go"),
    ("Can I take ibuprofen with food?", "Can I take ibuprofen without food?"),
    ("Is the museum free for children?", "Is the museum free for adults?"),
    ("How do I list hidden files?", "How do I list visible files?"),
    ("What's the time in New York?", "What's the time in New Delhi?"),
    ("Does the function return a list or a tuple?", "Does the function return a list and a tuple?"),
    ("What is half of 10?", "What is double 10?"),
    ("How do I uppercase a string in JavaScript?", "How do I lowercase a string in JavaScript?"),
    # Written later, trying to break the rules.
    ("Is 1/2 bigger than 1/3?", "Is 1/3 bigger than 1/2?"),
    ("What is 10 minus 3?", "What is 3 minus 10?"),
    ("Is it 9 AM?", "Is it 9 PM?"),
    ("Is it 9am?", "Is it 9pm?"),
    ("Are there any side effects?", "Are there no side effects?"),
    ("How do I zoom in?", "How do I zoom out?"),
    ("Is a square a rectangle?", "Is a rectangle a square?"),
    ("Is every square a rectangle?", "Is every rectangle a square?"),
    ("Send money from checking to savings", "Send money from savings to checking"),
    ("Copy file A to B", "Copy file B to A"),
    ("Merge branch main into dev", "Merge branch dev into main"),
    ("How do I redirect stderr to stdout?", "How do I redirect stdout to stderr?"),
    ("Is Tokyo east of Beijing?", "Is Beijing east of Tokyo?"),
    ("Who did Alice beat?", "Who beat Alice?"),
    ("What does a cat eat?", "What eats a cat?"),
    ("How much does a Tesla cost?", "How much does a Tesla weigh?"),
    ("How many calories in a large egg?", "How many calories in a small egg?"),
    ("What was the capital of Germany?", "What is the capital of Germany?"),
    ("Who won the World Cup?", "Who will win the World Cup?"),
    ("Is X as fast as Y?", "Is X faster than Y?"),
    ("What is the capital of Australia?", "What is the capital of Austria?"),
    ("who is the ceo of apple", "who is the ceo of google"),
    ("Translate 'good morning' into Spanish", "Translate 'good night' into Spanish"),
    ("How do I speed up my laptop?", "How do I slow down my laptop?"),
    ("What's the earliest flight to Rome?", "What's the latest flight to Rome?"),
    ("How do I expand all sections?", "How do I collapse all sections?"),
    ("Is it legal to drive barefoot?", "Is it illegal to drive barefoot?"),
    ("Can I still cancel my order?", "Can I no longer cancel my order?"),
    ("How do I get the length of a list?", "How do I get the length of a string?"),
    ("How many people live in China?", "How many people live in India?"),
    ("What is the square root of 16?", "What is the cube root of 16?"),
    ("Should I stretch before running?", "Should I stretch after running?"),
    ("Is the Earth bigger than Mars?", "Is Mars bigger than the Earth?"),
    ("Is water denser than ice?", "Is ice denser than water?"),
    ("Does vitamin C prevent colds?", "Does vitamin D prevent colds?"),
    ("How long to bake chicken at 400F?", "How long to bake chicken at 350F?"),
    (
        "What is the boiling point of water in Kelvin?",
        "What is the boiling point of water in Celsius?",
    ),
    ("Who was the first man on the moon?", "Who was the second man on the moon?"),
    ("How do I make a cake without eggs?", "How do I make a cake with eggs?"),
    ("Is it bad to sleep with socks on?", "Is it good to sleep with socks on?"),
    ("How do I become a doctor?", "How do I become a nurse?"),
    ("What is the plural of mouse?", "What is the singular of mouse?"),
    ("How do I convert Celsius to Fahrenheit?", "How do I convert Fahrenheit to Celsius?"),
    ("How do I exit vim?", "How do I enter vim?"),
    (
        "What is the difference between a list and a tuple?",
        "What is the difference between a tuple and a set?",
    ),
    ("What do you call a baby cat?", "What do you call a baby dog?"),
    ("Is the moon a planet?", "Is the moon a star?"),
    ("Should I use React or Vue?", "Should I use React and Vue?"),
    ("Why is my laptop overheating?", "Why is my laptop overcharging?"),
    ("How do I keep my dog calm during fireworks?", "How do I keep my cat calm during fireworks?"),
    ("What is the GDP of the US?", "What is the GDP of the UK?"),
    ("Can I freeze cooked rice?", "Can I freeze uncooked rice?"),
    ("Can I freeze cooked rice?", "Can I freeze raw rice?"),
    ("What's a healthy breakfast?", "What's an unhealthy breakfast?"),
    ("How do I apologize to my wife?", "How do I apologize to my husband?"),
    ("Can pregnant women eat sushi?", "Can pregnant women eat shrimp?"),
    ("Do I need a visa for Japan?", "Do I need a passport for Japan?"),
    ("How do I get rid of ants?", "How do I get rid of termites?"),
    ("What does a red light mean?", "What does a green light mean?"),
    ("Is the stock market open today?", "Is the stock market open tomorrow?"),
    ("What does HTML stand for?", "What does HTTP stand for?"),
    ("How do I clear my browser cache?", "How do I clear my browser history?"),
    ("Is the Great Wall visible from space?", "Is the Great Wall visible from the moon?"),
    ("How do I create a new branch from main?", "How do I create a new branch from master?"),
    ("How far is the moon from the earth?", "How far is the sun from the earth?"),
    ("How do I print a newline in Python?", "How do I print a tab in Python?"),
    ("Can I use my phone while charging?", "Can I use my phone while driving?"),
    ("What are the health benefits of green tea?", "What are the health risks of green tea?"),
    ("How do I declare a variable in JavaScript?", "How do I declare a constant in JavaScript?"),
    ("Is it rude to tip in Japan?", "Is it rude not to tip in Japan?"),
    ("What's the fastest land animal?", "What's the slowest land animal?"),
    ("Is 17 a prime number?", "Is 27 a prime number?"),
    ("What's the square of 12?", "What's the square of 21?"),
    (
        "Which is heavier, a kilo of feathers or a kilo of steel?",
        "Which is lighter, a kilo of feathers or a kilo of steel?",
    ),
    ("How do I convert a list to a set?", "How do I convert a set to a list?"),
    ("How do I turn a list into a set?", "How do I turn a set into a list?"),
    ("Can a landlord evict a tenant in winter?", "Can a tenant evict a landlord in winter?"),
    ("Does the Earth orbit the Sun?", "Does the Sun orbit the Earth?"),
    ("Does the earth orbit the sun?", "Does the sun orbit the earth?"),
    ("How do I join two tables in SQL?", "How do I split two tables in SQL?"),
    ("Is it OK to drink coffee while pregnant?", "Is it OK to drink alcohol while pregnant?"),
    ("How many grams in an ounce?", "How many ounces in a gram?"),
    ("What is the opposite of hot?", "What is the opposite of cold?"),
    ("Is Pluto a planet?", "Is Pluto not a planet?"),
    ("Was Pluto ever a planet?", "Was Pluto never a planet?"),
    ("Which is older, Rome or Athens?", "Which is younger, Rome or Athens?"),
    ("Is Rome older than Athens?", "Is Athens older than Rome?"),
    ("How do I get from the airport to the hotel?", "How do I get from the hotel to the airport?"),
    ("Should I take the job offer?", "Should I reject the job offer?"),
    ("Can I return an item without a receipt?", "Can I return an item with a receipt?"),
    (
        "What's the time difference between London and New York?",
        "What's the time difference between London and Tokyo?",
    ),
    ("Is my flight delayed?", "Is my flight cancelled?"),
    ("How do I sign up for Netflix?", "How do I sign out of Netflix?"),
    ("How do I stop Windows updates?", "How do I start Windows updates?"),
    ("How do I pause Windows updates?", "How do I resume Windows updates?"),
    ("What's the minimum wage in California?", "What's the minimum wage in Texas?"),
    ("Is a tomato a fruit?", "Is a tomato a vegetable?"),
    ("Who was president before Obama?", "Who was president after Obama?"),
    ("What comes after Tuesday?", "What comes before Tuesday?"),
    ("What is the past tense of run?", "What is the future tense of run?"),
    ("How do I lose weight fast?", "How do I gain weight fast?"),
    ("How do I gain muscle?", "How do I lose muscle?"),
    ("How many hours of sleep does a baby need?", "How many hours of sleep does an adult need?"),
    (
        "What is the speed limit on highways in Germany?",
        "What is the speed limit on highways in France?",
    ),
    ("Does Python pass arguments by reference?", "Does Python pass arguments by value?"),
    ("Is HTTP stateless?", "Is HTTP stateful?"),
    ("Is JavaScript single-threaded?", "Is JavaScript multi-threaded?"),
    ("Is the list sorted?", "Is the list unsorted?"),
    ("How do I check if a key exists in a dict?", "How do I check if a value exists in a dict?"),
    (
        "How do I check if a string contains a substring?",
        "How do I check if a substring contains a string?",
    ),
    ("How do I check if a file exists?", "How do I check if a file does not exist?"),
    ("Does the car need premium gas?", "Does the car need regular gas?"),
    (
        "What's the interest rate on a 30 year mortgage?",
        "What's the interest rate on a 15 year mortgage?",
    ),
    ("What is 2 to the power of 10?", "What is 10 to the power of 2?"),
    ("What is 2 raised to 10?", "What is 10 raised to 2?"),
    ("Is Monday a holiday?", "Is Friday a holiday?"),
    ("Will it be sunny on Monday?", "Will it be sunny on friday?"),
    (
        "What is the maximum heart rate for a 40 year old?",
        "What is the resting heart rate for a 40 year old?",
    ),
    ("Why is my dog vomiting?", "Why is my cat vomiting?"),
    ("What language do they speak in Brazil?", "What language do they speak in Argentina?"),
    ("How do I enable two-factor authentication?", "How do I disable two-factor authentication?"),
    ("How do I add a column to a table?", "How do I drop a column from a table?"),
    (
        "What is the population of the largest city in Canada?",
        "What is the population of the smallest city in Canada?",
    ),
    ("Should I water my plants in the morning?", "Should I water my plants at night?"),
    ("How do I unsubscribe from emails?", "How do I subscribe to emails?"),
    ("Is there a fee for early withdrawal?", "Is there a fee for late withdrawal?"),
    ("What's the penalty for paying taxes late?", "What's the penalty for paying taxes early?"),
    ("Who is the father of Luke Skywalker?", "Who is the son of Luke Skywalker?"),
    ("Is Alice taller than Bob?", "Is Bob shorter than Alice?"),
    ("Is Alice taller than Bob?", "Is Alice shorter than Bob?"),
    ("How much is 20 USD in EUR?", "How much is 20 EUR in USD?"),
    ('Does "i" come before "e" except after "c"?', 'Does "e" come before "i" except after "c"?'),
    ("What does the 'git stash pop' command do?", "What does the 'git stash apply' command do?"),
    ("How do I rename a file in Linux?", "How do I move a file in Linux?"),
    ("Can you eat the skin of a kiwi?", "Can you eat the seeds of a kiwi?"),
    ("How many players are on a soccer team?", "How many players are on a basketball team?"),
    ("What's the best time to visit Japan?", "What's the worst time to visit Japan?"),
    ("Do cats see in color?", "Do cats see in the dark?"),
    ("Is the function pure?", "Is the function impure?"),
    ("Is it too late to get a flu shot?", "Is it too early to get a flu shot?"),
    ("What happens if I miss a payment?", "What happens if I make a payment?"),
    ("How do I undo git add?", "How do I redo git add?"),
    ("How do I install packages globally with npm?", "How do I install packages locally with npm?"),
    ("Is x >= 5?", "Is x > 5?"),
    ("What is a VPN?", "How does a VPN work?"),
    (
        "How do I enable notifications on Android?",
        "What's the way to disable notifications on Android?",
    ),
    ("How can I turn on dark mode in Windows 11?", "In Windows 11, how do I switch off dark mode?"),
    (
        "Is it legal to record a phone call in California?",
        "Is it illegal to record a phone call in California?",
    ),
    (
        "Can I drink alcohol while taking antibiotics?",
        "Should I avoid drinking alcohol while taking antibiotics?",
    ),
    ("What's 7 times 8?", "What's seven times nine?"),
    ("How many minutes are in 3 hours?", "How many minutes are in 4 hours?"),
    ("Is 2024 a leap year?", "Is 2025 a leap year?"),
    ("What is the 10th Fibonacci number?", "What is the 11th Fibonacci number?"),
    ("Book a table for 4 people at 7pm", "Book a table for 4 people at 8pm"),
    ("Is port 8080 open?", "Is port 8008 open?"),
    ("What does error code 0x80070005 mean?", "What does error code 0x80070057 mean?"),
    (
        "What happens if I don't pay my credit card bill?",
        "What happens if I pay my credit card bill?",
    ),
    ("Why isn't my printer working?", "Why is my printer working?"),
    ("Is it bad to never wash your jeans?", "Is it bad to always wash your jeans?"),
    ("How do I prevent my screen from turning off?", "How do I make my screen turn off?"),
    ("Does the museum allow photography?", "Does the museum forbid photography?"),
    (
        "Can I upgrade from Windows 10 to Windows 11?",
        "Can I downgrade from Windows 11 to Windows 10?",
    ),
    ("How do I increase the volume on my Mac?", "How do I lower the volume on my Mac?"),
    ("What is the highest mountain in Europe?", "What is the lowest point in Europe?"),
    ("Who is the current CEO of Microsoft?", "Who was the first CEO of Microsoft?"),
    ("What is the capital of Canada?", "What is the capital of Canada's largest province?"),
    (
        "What's the difference between Python and Java?",
        "What's the difference between Python and JavaScript?",
    ),
    ("How do I install Node.js on macOS?", "How do I install Node.js on Windows?"),
    ("What is the `map` function in JavaScript?", "What is the `filter` function in JavaScript?"),
    ('Explain the "self" keyword in Python', 'Explain the "this" keyword in Python'),
    ('What does the error "ModuleNotFoundError" mean?', 'What does the error "ImportError" mean?'),
    ("Does Germany export more cars than Japan?", "Does Japan export more cars than Germany?"),
    ("Which is bigger, the Sun or the Moon?", "Which is smaller, the Sun or the Moon?"),
    ("Did the Romans conquer the Greeks?", "Did the Greeks conquer the Romans?"),
    ("Is it cheaper to rent or to buy a house?", "Is it more expensive to rent or to buy a house?"),
    (
        "How do I move a file from Downloads to Desktop on Mac?",
        "How do I move a file from Desktop to Downloads on Mac?",
    ),
    ("Can I give my dog chocolate?", "Can I give chocolate my dog?"),
    ("Convert 5 feet to meters", "Convert 5 meters to feet"),
    (
        "What's the best way to learn guitar as an adult?",
        "What's the best way to learn guitar as a child?",
    ),
    (
        "What are the side effects of taking too much vitamin D?",
        "What are the side effects of taking too little vitamin D?",
    ),
    (
        "Is it safe to run a marathon without training?",
        "Is it safe to run a marathon after training?",
    ),
    ("Why do we sleep at night?", "Why do we sleep during the day?"),
    ("How do I make my sourdough more sour?", "How do I make my sourdough less sour?"),
    ("What temperature should I bake cookies at?", "What temperature should I bake bread at?"),
    (
        "How do I write a cover letter for an internship?",
        "How do I write a resignation letter for an internship?",
    ),
    ("What's a healthy weight for a 6 foot man?", "What's a healthy weight for a 6 foot woman?"),
    ("Is the Pacific deeper than the Atlantic?", "Is the Atlantic deeper than the Pacific?"),
    ("Is it too late to plant tomatoes in July?", "Is it too early to plant tomatoes in July?"),
    ("Does ibuprofen interact with alcohol?", "Does ibuprofen interact with caffeine?"),
    ("Can I bring liquids in my carry-on?", "Can I bring liquids in my checked bag?"),
    (
        "How do I delete my Facebook account permanently?",
        "How do I deactivate my Facebook account temporarily?",
    ),
    ("Is the restaurant open on Christmas Day?", "Is the restaurant open on Christmas Eve?"),
    ("Did Alice pay Bob?", "Did Bob pay Alice?"),
    ("Translate this from English into French", "Translate this from French into English"),
    ("Is 3 greater than 5?", "Is 5 greater than 3?"),
    ("Divide 10 by 2", "Divide 2 by 10"),
    ("Replace tabs with spaces in vim", "Replace spaces with tabs in vim"),
    (
        "How do I copy files from my laptop to my phone?",
        "How do I copy files from my phone to my laptop?",
    ),
    ("Is London north of Paris?", "Is Paris north of London?"),
    ("Can a square be a rectangle?", "Can a rectangle be a square?"),
    (
        "Does aspirin thin the blood more than ibuprofen?",
        "Does ibuprofen thin the blood more than aspirin?",
    ),
    ("Is the mother of Zeus Rhea?", "Is the mother of Rhea Zeus?"),
    ("How do I cast a float to an int in C?", "How do I cast an int to a float in C?"),
    (
        "Which is heavier: a kilo of steel or a pound of feathers?",
        "Which is heavier: a pound of steel or a kilo of feathers?",
    ),
    ("Do dolphins eat sharks?", "Do sharks eat dolphins?"),
    ("Should I put the milk in before the tea?", "Should I put the tea in before the milk?"),
    (
        "What is the distance from Earth to Mars in km?",
        "What is the distance from Earth to Mars in miles?",
    ),
    ("How do I pipe stdout into grep?", "How do I pipe grep into stdout?"),
    ("Is New York bigger than London?", "Is London bigger than New York?"),
    ("Is the dog afraid of the cat?", "Is the cat afraid of the dog?"),
]

# When this file was written 75 of the 111 PARAPHRASES passed (0.68; 38 of the first 52, 37
# of the later 59). The floor is that less a margin, so a rule change that costs many hits
# shows up here (false misses cost money, not correctness).
PARAPHRASE_PASS_FLOOR = 0.60


def test_dev_set_is_large_enough():
    assert len(PARAPHRASES) >= 40 and len(OPPOSITES) >= 40


def test_no_opposite_pair_passes():
    passed = [(a, b) for a, b in OPPOSITES if refused(a, b) is None]
    assert not passed, passed


def test_paraphrase_pass_rate():
    passed = sum(refused(a, b) is None for a, b in PARAPHRASES)
    assert passed / len(PARAPHRASES) >= PARAPHRASE_PASS_FLOOR, passed


@pytest.mark.parametrize("pairs", [PARAPHRASES, OPPOSITES])
def test_symmetric(pairs):
    for a, b in pairs:
        assert check(a, b) == check(b, a), (a, b)
    texts = sorted({text for pair in pairs for text in pair})[:60]  # unrelated texts too
    for a, b in itertools.combinations(texts, 2):
        assert check(a, b) == check(b, a), (a, b)


def test_a_text_matches_itself():
    for text in {text for pair in PARAPHRASES + OPPOSITES for text in pair}:
        assert check(text, text) is None, text
