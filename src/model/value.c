/*
 * value.c — lookups on the value tree (see value.h).
 */
#include "model/value.h"

#include <string.h>

val *val_get(const val *obj, const char *key) {
    if (!obj || obj->type != VAL_OBJECT) return NULL;
    size_t n = strlen(key);
    for (size_t i = 0; i < obj->u.o.n; i++) {
        const val_field *f = &obj->u.o.fields[i];
        if (f->key_len == n && memcmp(f->key, key, n) == 0) return f->v;
    }
    return NULL;
}

const char *val_type_name(val_type t) {
    switch (t) {
    case VAL_NULL: return "null";
    case VAL_BOOL: return "a boolean";
    case VAL_FLOAT:
    case VAL_INT: return "a number";
    case VAL_STRING: return "a string";
    case VAL_ARRAY: return "an array";
    case VAL_OBJECT: return "an object";
    }
    return "a value";
}
