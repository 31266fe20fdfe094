//===- ConfigMacros.h - early returns for the config parsers ----*- C++ -*-===//
//
// Private to lib/Frontend: the config parsers read dozens of values, each of
// which may fail with an llvm::Error naming the file and key.
//
//===----------------------------------------------------------------------===//

#ifndef MOIR_LIB_FRONTEND_CONFIGMACROS_H
#define MOIR_LIB_FRONTEND_CONFIGMACROS_H

/// `auto var = *expr;`, returning expr's error from the enclosing function.
#define TRY(var, expr)                                                         \
  auto var##OrErr = (expr);                                                    \
  if (!var##OrErr)                                                             \
    return var##OrErr.takeError();                                             \
  auto var = *var##OrErr

/// Returns the llvm::Error of `expr` from the enclosing function, if any.
#define CHECK_ERR(expr)                                                        \
  if (llvm::Error err = (expr))                                                \
    return std::move(err)

#endif
