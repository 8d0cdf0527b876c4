{#- GENERATED from dbt_stripe_activation/objects (do not edit by hand):
    python -m dbt_stripe_activation.objects.macro_registry > macros/registry.sql
    Every Stripe object the package syncs, its behaviors and its key kinds. -#}
{% macro object_registry() %}
  {{ return({
  "customer": {
    "behaviors": [
      "update_or_create",
      "update_only",
      "create_only"
    ],
    "keys": {
      "email": {
        "can_create": true,
        "casefold": true
      },
      "id": {
        "can_create": false,
        "casefold": false
      },
      "metadata": {
        "can_create": true,
        "casefold": false
      }
    }
  },
  "invoice_item": {
    "behaviors": [
      "update_or_create",
      "update_only",
      "create_only"
    ],
    "keys": {
      "id": {
        "can_create": false,
        "casefold": false
      },
      "metadata": {
        "can_create": true,
        "casefold": false
      }
    }
  },
  "meter_event": {
    "behaviors": [
      "append"
    ],
    "keys": {
      "identifier": {
        "can_create": true,
        "casefold": false
      }
    }
  },
  "price": {
    "behaviors": [
      "update_or_create",
      "update_only",
      "create_only"
    ],
    "keys": {
      "id": {
        "can_create": false,
        "casefold": false
      },
      "lookup_key": {
        "can_create": true,
        "casefold": false
      },
      "metadata": {
        "can_create": true,
        "casefold": false
      }
    }
  },
  "product": {
    "behaviors": [
      "update_or_create",
      "update_only",
      "create_only"
    ],
    "keys": {
      "id": {
        "can_create": true,
        "casefold": false
      },
      "metadata": {
        "can_create": true,
        "casefold": false
      }
    }
  },
  "subscription_item": {
    "behaviors": [
      "update_only"
    ],
    "keys": {
      "id": {
        "can_create": false,
        "casefold": false
      },
      "metadata": {
        "can_create": true,
        "casefold": false
      }
    }
  }
}) }}
{% endmacro %}
