"""One contracts module per pipeline: every tensor, file, field, parameter and control name, defined once.

The pipeline specs (``search_build.pipelines.<pipeline>``), exporters, adapters, tools and tests import
their names from here; nothing else spells them. Modules are named after the pipeline specs:

    query_embedding   query_embedding
    product_search    query_intent, product_duplicate (one BERT backbone, two heads)
    spell_correct     spell_correct (and its stages)
    search_bar        catalog_search, search_bar

No heavy imports here: adapters, build code and clients all read these.
"""
